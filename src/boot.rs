//! The one orchestration: plan -> attest -> broker -> storage -> secrets.
//!
//! One pass, no back and forth: the plan is made from the config before
//! any I/O; the broker is asked once for every resource the plan needs;
//! storage and secrets only consume what came back. If the broker step
//! fails, no device is touched at all, so a failed key fetch can never
//! lead to a format.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::attest::gpu::{GpuCollector, GpuError};
use crate::attest::{self, AttestError, Paths};
use crate::broker::jwe::{EphemeralKey, JweError, KeyAlg};
use crate::broker::{BrokerClient, BrokerError};
use crate::config::tripwire::{self, Tripped};
use crate::config::{Config, GpuPolicy, KeyAlgConfig, ResourcePath, RootIntegrity};
use crate::initdata::{self, InitDataError};
use crate::secrets::{self, DeliveryError, Secret, Storage, Target};
use crate::storage::{self, RootCheckEnv, StorageEnv, StorageError, VolumeAction};
use crate::timing;

/// Where the boot finds things; every path injectable.
#[derive(Debug, Clone)]
pub struct BootEnv {
    pub attest: Paths,
    pub storage: StorageEnv,
    /// `--allow-simulated-tee` (the config twin is in the plan).
    pub allow_simulated: bool,
    /// The kernel command line (`/proc/cmdline`), checked by the tripwire.
    pub cmdline: PathBuf,
    /// The workload's root to check before attesting (`/sysroot` in an
    /// initrd, `/` in the booted system); `None` as PID 1, which mounted
    /// it through dm-verity itself.
    pub check_root: Option<PathBuf>,
    pub root_env: RootCheckEnv,
}

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error("attestation: {0}")]
    Attest(#[from] AttestError),
    #[error("GPU attestation: {0}")]
    Gpu(#[from] GpuError),
    #[error("ephemeral key: {0}")]
    Key(#[from] JweError),
    #[error("key broker: {0}")]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    InitData(#[from] InitDataError),
    /// Storage errors name their volume and device themselves.
    #[error(transparent)]
    Storage(Box<StorageError>),
    #[error("secret {resource}: {source}")]
    Secret {
        resource: String,
        #[source]
        source: DeliveryError,
    },
    #[error("cannot read the kernel command line {path}: {source}; no key is fetched without checking it")]
    CmdlineRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the kernel command line holds {}. The host wrote it, and it opens a shell or changes what runs next to the keys, so this image fetches no key. Remove it from the VM's command line, and measure the command line (SNP kernel-hashes=on, a UKI, TDX RTMR[2]) so the host cannot add it", list(.0))]
    Cmdline(Vec<Tripped>),
    #[error("the broker session did not return {0}; this is a bug")]
    Missing(ResourcePath),
}

/// What the boot did, for the console and the benchmarks.
#[derive(Debug, Default)]
pub struct BootReport {
    pub volumes: Vec<(String, VolumeAction, Duration)>,
    pub secrets: Vec<PathBuf>,
    pub broker_time: Duration,
    pub total: Duration,
}

/// Runs the boot for the measured `config`: reads and checks host-supplied
/// init-data (if the config allows any), makes the plan, runs one attested
/// broker session, then every volume, then every secret. Key material is
/// dropped (and wiped) when this returns.
pub fn run(config: &Config, env: &BootEnv) -> Result<BootReport, BootError> {
    let started = Instant::now();
    let mut report = BootReport::default();
    timing::timed("cmdline check", || {
        check_cmdline(&env.cmdline, config.failure.debug_image)
    })?;
    if let Some(root) = &env.check_root {
        timing::timed("root check", || check_root(config, root, &env.root_env))?;
    }

    let init_data = initdata::load(config.init_data.as_ref())?;
    // The broker session runs on its own thread; once it knows the final
    // config (init-data applied) it hands it over, and this thread
    // examines the volumes meanwhile: locate, probe, header copy, shape
    // check, all before any key exists and without writing a device.
    // Nothing is decided until the keys are in and the tokens' MACs check.
    let (plan_tx, plan_rx) = std::sync::mpsc::channel::<Config>();
    let (session, examined) = std::thread::scope(|scope| {
        // `move`: the sender drops with the thread, so a session that
        // fails before its plan ends the wait below.
        let session = scope.spawn(move || {
            broker_session(config, env, init_data, |c| {
                let _ = plan_tx.send(c.clone());
            })
        });
        let examined: Vec<Result<storage::Examined, StorageError>> = match plan_rx.recv() {
            Ok(planned) if !planned.volumes.is_empty() => {
                let _phase = timing::phase("examine");
                planned
                    .volumes
                    .iter()
                    .map(|vol| {
                        timing::timed(vol.name.as_str(), || storage::examine(vol, &env.storage))
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let session = session
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (session, examined)
    });
    let (config, fetched) = session?;
    report.broker_time = started.elapsed();
    log::info!(
        "timing: attestation and {} resources in {} ms",
        fetched.len(),
        report.broker_time.as_millis()
    );
    let get = |r: &ResourcePath| fetched.get(r).ok_or_else(|| BootError::Missing(r.clone()));

    if !config.volumes.is_empty() {
        storage::set_up_crypt_logging();
    }
    let mut examined = examined.into_iter();
    for vol in &config.volumes {
        let t = Instant::now();
        let _phase = timing::phase(format!("volume {}", vol.name));
        let wrap = |e| BootError::Storage(Box::new(e));
        let keys = storage::VolumeKeys::new(vol, get(&vol.key)?, config.instance_id.as_deref());
        let prepared = match examined.next() {
            Some(found) => {
                storage::prepare_examined(vol, found.map_err(wrap)?, &keys, &env.storage)
            }
            None => storage::prepare_volume(vol, &keys, &env.storage),
        }
        .map_err(wrap)?;
        timing::timed("mount", || storage::mount_volume(&prepared, vol)).map_err(wrap)?;
        timing::timed("record", || {
            storage::record_volume(&prepared, vol, &env.storage)
        })
        .map_err(wrap)?;
        log::info!(
            "volume {}: {:?} {} -> {} at {} in {} ms",
            vol.name,
            prepared.action,
            prepared.device.display(),
            prepared.mapper.display(),
            vol.mountpoint.display(),
            t.elapsed().as_millis()
        );
        report
            .volumes
            .push((vol.name.clone(), prepared.action, t.elapsed()));
    }

    let secrets_phase = (!config.secrets.is_empty()).then(|| timing::phase("secrets"));
    for s in &config.secrets {
        let target = Target {
            mode: s.mode_bits(),
            owner: Some(s.owner_ids()),
            storage: Storage::MemoryOnly,
        };
        secrets::write_secret(&s.path, get(&s.resource)?, target).map_err(|source| {
            BootError::Secret {
                resource: s.resource.to_string(),
                source,
            }
        })?;
        log::info!(
            "secret {} -> {} ({:o})",
            s.resource,
            s.path.display(),
            target.mode
        );
        report.secrets.push(s.path.clone());
    }
    drop(secrets_phase);
    report.total = started.elapsed();
    Ok(report)
}

/// The attested broker session: opens the attester, checks and applies
/// host-supplied init-data, then fetches every resource of the plan.
/// `planned` gets the final config as soon as it is known (before the
/// ephemeral key and the network), so the caller can start on what needs
/// no key; it is not called when the session fails before that.
fn broker_session(
    config: &Config,
    env: &BootEnv,
    init_data: Option<initdata::InitData>,
    planned: impl FnOnce(&Config),
) -> Result<(Config, HashMap<ResourcePath, Secret>), BootError> {
    let mut config = config.clone();
    let mut fetched: HashMap<ResourcePath, Secret> = HashMap::new();
    let _phase = timing::phase("broker");
    if init_data.is_none() && config.plan().resources.is_empty() {
        planned(&config);
        return Ok((config, fetched));
    }
    let attester = timing::timed("attester open", || {
        attest::from_config(&config.attester, env.allow_simulated, &env.attest)
    })?;
    // GPUs the policy asks for are checked (present, CC mode) before the
    // broker is contacted.
    let gpus = GpuCollector::from_policy(config.attester.gpus)?;
    let mut client = timing::timed("client", || BrokerClient::new(&config.broker))?;
    if let Some(g) = gpus {
        client = client.with_gpus(g);
    }
    if let Some(d) = &init_data {
        // Nothing from the host is used before this check.
        d.verify(&attester.host_data()?)?;
        config = d.apply(&config)?;
        client = client.with_init_data(d.to_wire());
    }
    planned(&config);
    let plan = config.plan();
    if plan.resources.is_empty() && config.attester.gpus != GpuPolicy::None {
        log::warn!(
            "GPUs: not attested and not set ready: the config fetches no resource, so there \
             is no broker session to attest them in"
        );
    }
    if !plan.resources.is_empty() {
        let key = timing::timed("ephemeral key", || {
            EphemeralKey::generate(match config.broker.key_alg {
                KeyAlgConfig::EcdhEsA256Kw => KeyAlg::EcdhEsA256Kw,
                KeyAlgConfig::RsaOaep256 => KeyAlg::RsaOaep256,
            })
        })?;
        fetched = client
            .fetch_all(attester.as_ref(), &key, &plan.resources)?
            .into_iter()
            .collect();
    }
    Ok((config, fetched))
}

fn list(tripped: &[Tripped]) -> String {
    tripped
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The command-line tripwire: no key is fetched while the host-written
/// kernel command line asks for a shell or a different program. Defence in
/// depth (a measured command line is the defence): a debug image is only
/// warned, loudly.
pub fn check_cmdline(path: &Path, debug_image: bool) -> Result<(), BootError> {
    let text = std::fs::read(path).map_err(|source| BootError::CmdlineRead {
        path: path.to_owned(),
        source,
    })?;
    let tripped = tripwire::scan_bytes(&text);
    if tripped.is_empty() {
        return Ok(());
    }
    if !debug_image {
        return Err(BootError::Cmdline(tripped));
    }
    for t in &tripped {
        log::warn!("the kernel command line holds {t}; allowed only because this is a debug image, a production image fetches no key");
    }
    Ok(())
}

/// Under systemd: the root the workload runs from must be dm-verity or one
/// of our volumes, unless the measured config says the image protects it.
fn check_root(config: &Config, root: &Path, env: &RootCheckEnv) -> Result<(), BootError> {
    if config.root.integrity == RootIntegrity::Image {
        log::info!(
            "root {}: not checked, protected by the image: {}",
            root.display(),
            config.root.reason.as_deref().unwrap_or_default()
        );
        return Ok(());
    }
    let names: Vec<String> = config.volumes.iter().map(|v| v.name.clone()).collect();
    let how =
        storage::check_root(root, &names, env).map_err(|e| BootError::Storage(Box::new(e)))?;
    log::info!("root {}: {how:?}", root.display());
    Ok(())
}
