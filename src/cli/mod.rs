//! The commands behind `main`: each loads what it needs, calls the library
//! and turns errors into `anyhow` with context for the console.

pub mod boot;
pub mod evidence;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cvm_init::attest::gpu::GpuCollector;
use cvm_init::attest::{self, Paths};
use cvm_init::broker::jwe::{EphemeralKey, KeyAlg};
use cvm_init::broker::BrokerClient;
use cvm_init::config::{cmdline::Overrides, Config, KeyAlgConfig, ResourcePath};
use cvm_init::initdata;
use cvm_init::secrets::{self, Storage, Target};

/// Options every command that talks to the broker shares.
pub struct Common<'a> {
    pub config: &'a Path,
    pub cmdline: &'a Path,
    pub allow_simulated_tee: bool,
}

/// Loads the config, applies the allowed command-line overrides and sets
/// the log level.
fn load(config: &Path, cmdline: &Path) -> Result<Config> {
    let mut config = Config::load(config)?;
    let overrides = Overrides::read(cmdline);
    for ignored in &overrides.ignored {
        log::warn!("kernel command line: ignored {ignored}");
    }
    overrides.apply(&mut config);
    cvm_init::logging::set_level(config.log.level.to_filter());
    if config.failure.debug_image {
        cvm_init::logging::mark_debug_image();
    }
    Ok(config)
}

pub fn check_config(config_path: &Path, cmdline: &Path) -> Result<()> {
    let config = load(config_path, cmdline)?;
    // The pinned broker identity as the boot will load it: an image built
    // without its broker's CA (or with a file that is not one) fails here,
    // at build time, not at its first boot.
    BrokerClient::new(&config.broker)
        .context("the broker's pinned identity (broker.ca_cert / broker.spki_sha256)")?;
    println!("config {} is valid", config_path.display());
    println!("{}", config.plan());
    Ok(())
}

/// `inspect-volume`: the report on stdout; reads the config only for
/// `--volume`.
pub fn inspect_volume(common: &Common<'_>, device: &Path, volume: Option<&str>) -> Result<()> {
    let config = volume
        .map(|_| load(common.config, common.cmdline))
        .transpose()?;
    let vol = match (volume, &config) {
        (Some(name), Some(config)) => Some(
            config
                .volumes
                .iter()
                .find(|v| v.name == name)
                .with_context(|| {
                    format!(
                        "{} has no volume {name:?} (volumes: {:?})",
                        common.config.display(),
                        config.volumes.iter().map(|v| &v.name).collect::<Vec<_>>()
                    )
                })?,
        ),
        _ => None,
    };
    let env = boot::storage_env(Duration::from_secs(0));
    let report = cvm_init::storage::inspect_volume(device, vol, &env)?;
    println!("{report}");
    Ok(())
}

pub fn fetch(
    common: &Common<'_>,
    resource: &str,
    output: &Path,
    allow_persistent_output: bool,
) -> Result<()> {
    let resource: ResourcePath = resource
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))
        .context("the RESOURCE argument")?;
    let storage = if allow_persistent_output {
        Storage::AllowPersistent
    } else {
        Storage::MemoryOnly
    };
    // Refuse a bad output path before any attestation happens.
    secrets::check_target(output, storage)?;
    let config = load(common.config, common.cmdline)?;
    // A shell the host asked for on the command line could run this very
    // command: no key while it is there.
    cvm_init::boot::check_cmdline(common.cmdline, config.failure.debug_image)?;
    let attester = attest::from_config(
        &config.attester,
        common.allow_simulated_tee,
        &Paths::default(),
    )
    .context("choosing the attester")?;
    let gpus = GpuCollector::from_policy(config.attester.gpus).with_context(|| {
        format!(
            "checking the GPUs (attester.gpus = \"{}\")",
            config.attester.gpus
        )
    })?;
    let mut client = BrokerClient::new(&config.broker)?;
    if let Some(g) = gpus {
        client = client.with_gpus(g);
    }
    // The broker's policy may look at the init-data; it is sent only once it
    // matches this VM's HOST_DATA / MRCONFIGID (its additions are for boot).
    if let Some(d) = initdata::load(config.init_data.as_ref())? {
        d.verify(&attester.host_data()?)?;
        client = client.with_init_data(d.to_wire());
    }
    let key = EphemeralKey::generate(match config.broker.key_alg {
        KeyAlgConfig::EcdhEsA256Kw => KeyAlg::EcdhEsA256Kw,
        KeyAlgConfig::RsaOaep256 => KeyAlg::RsaOaep256,
    })?;
    let mut fetched = client
        .fetch_all(attester.as_ref(), &key, std::slice::from_ref(&resource))
        .with_context(|| format!("fetching {resource} from {}", config.broker.url))?;
    let (_, secret) = fetched
        .pop()
        .context("the broker session returned no resource")?;
    let target = Target {
        storage,
        ..Target::default()
    };
    secrets::write_secret(output, &secret, target)?;
    log::info!(
        "wrote {resource} ({} bytes) to {} (mode 0600)",
        secret.len(),
        output.display()
    );
    Ok(())
}
