//! The real thing: cvm-init as `/init` (PID 1) of a minimal initramfs,
//! the development broker on the host's 127.0.0.1 (the guest reaches it as
//! 10.0.2.2), the demo workload on a read-only root disk, and an encrypted
//! data disk. Used by `vm-bench demo` and by `tests/vm_boot.rs`. The same
//! bench boots an initrd made by dracut or mkinitramfs from the installed
//! Debian package instead ([`Options::generator`], `tests/vm_package.rs`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::distro_initrd::{self, Generator};
use crate::initramfs::Initramfs;
use crate::kernel::{self, Kernel};
use crate::qemu::{free_port, Vm, VmSpec};
use crate::workload::{self, TlsFiles};
use crate::{rootfs, scan};

/// Broker resource holding the data disk's master secret (HKDF input).
pub const DISK_RESOURCE: &str = "default/disk/data";
/// Broker resource a host-supplied init-data document asks for.
pub const APP_RESOURCE: &str = "default/app/token";
/// fw_cfg name of the host's init-data document (QEMU `-fw_cfg`).
pub const INIT_DATA_FW_CFG: &str = "opt/cvm-init/init-data";
/// Console line prefixes that end a boot badly: cvm-init as PID 1, the
/// workload, the kernel; systemd in a dracut initrd (a failed unit, the
/// emergency shell); the initramfs-tools script and its panic shell.
pub const FAILURE_MARKERS: &[&str] = &[
    "BOOT FAILED",
    "WORKLOAD: FAIL",
    "Kernel panic",
    "Failed to start",
    "Entering emergency mode",
    "cvm-init failed",
    "ALERT!",
];

/// The config sections only cvm-init as PID 1 reads.
const PID1_CONFIG: &str = r#"
[boot]
root = "/dev/vda"
root_fstype = "ext4"
root_options = ["ro"]
init = "/sbin/init"
device_wait_secs = 10

[network]
interface = "eth0"
address = "10.0.2.15/24"
gateway = "10.0.2.2"
"#;

/// The generators' initrds mount the bench's workload image from `root=`
/// unverified (their verity path, systemd-veritysetup, is the image
/// builder's); the config says so, as an image must.
const GENERATOR_ROOT: &str = "\n[root]\nintegrity = \"image\"\nreason = \"vm-bench: the test workload image, mounted by the initrd from root=\"\n";

/// Kernel command line for a generator's initrd: the workload image is
/// the root.
pub const ROOT_CMDLINE: &str = "root=/dev/vda ro rootfstype=ext4";

/// The dracut initrd's network configuration (systemd-networkd, DHCP from
/// QEMU's user network; udev names the NIC ens*/enp*).
const NETWORKD_FILE: &str = "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n";

/// The binaries under test, built with the `vm` profile.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub cvm_init: PathBuf,
    pub kbs_dev: PathBuf,
}

/// Builds `cvm-init` and `kbs-dev` with `cargo build --profile vm`.
pub fn build_binaries() -> Result<Binaries> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            "vm",
            "-p",
            "cvm-init",
            "-p",
            "kbs-dev",
        ])
        .current_dir(&workspace)
        .status()
        .context("running cargo build --profile vm")?;
    if !status.success() {
        bail!("cargo build --profile vm -p cvm-init -p kbs-dev failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let bins = Binaries {
        cvm_init: target.join("vm/cvm-init"),
        kbs_dev: target.join("vm/kbs-dev"),
    };
    for b in [&bins.cvm_init, &bins.kbs_dev] {
        if !b.is_file() {
            bail!("{} was not built", b.display());
        }
    }
    Ok(bins)
}

/// Everything a boot needs, kept in `dir`.
pub struct AgentBench {
    pub kernel: Kernel,
    pub bins: Binaries,
    pub dir: PathBuf,
    pub initrd: PathBuf,
    pub root_image: PathBuf,
    /// The workload's TLS key and certificate, held by the broker.
    pub tls: TlsFiles,
    /// The data disk's master secret, held by the broker.
    pub disk_secret: Vec<u8>,
    pub broker_port: u16,
    /// The data volume uses dm-integrity (`integrity = true`).
    pub integrity: bool,
    /// The data volume's pinned `luks_uuid` ([`Options::luks_uuid`]).
    pub luks_uuid: Option<String>,
    /// The simulated launch's host data (hex): the measured config then
    /// accepts a host-supplied init-data document through fw_cfg.
    pub host_data: Option<String>,
    /// The init-data document the host passes on the next boots.
    pub init_data: Option<PathBuf>,
    /// The workload root's dm-verity tree; `None`: an unverified root in a
    /// debug image ([`Options::unverified_root`]).
    pub verity: Option<rootfs::VerityRoot>,
    /// `None`: cvm-init is `/init` of the bench's own initramfs. Else the
    /// generator that made the initrd from the installed package.
    pub generator: Option<Generator>,
    /// The generator's run (log, time), when there is a generator.
    pub generated: Option<distro_initrd::Built>,
    broker: Option<Child>,
    /// The Azure-like vTPM ([`Options::azure_vtpm`]), its stand-in IMDS's
    /// port, and the swtpm serving the current boot.
    vtpm: Option<(crate::vtpm::Vtpm, u16)>,
    swtpm: std::sync::Mutex<Option<crate::vtpm::Running>>,
}

/// How the bench's measured image differs from the default.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `integrity = true` on the data volume.
    pub integrity: bool,
    /// Simulated HOST_DATA (hex) and an `[init_data]` section allowing
    /// host-supplied secrets from fw_cfg.
    pub host_data: Option<String>,
    /// Instead of the bench's own initramfs (cvm-init as PID 1), an initrd
    /// made by this generator from the Debian package installed on this
    /// host ([`crate::package::Installed`]), with this bench's config and
    /// broker CA as `/etc/cvm-init`; the root then comes from the kernel
    /// command line ([`ROOT_CMDLINE`]).
    pub generator: Option<Generator>,
    /// As PID 1: mount the root unverified, which only a debug image
    /// (`failure.debug_image = true`) may do. For the with/without
    /// comparison of the verity root's cost.
    pub unverified_root: bool,
    /// Boot this cvm-init binary instead of the one just built (an older
    /// revision, for a before/after comparison in the same run).
    pub cvm_init: Option<PathBuf>,
    /// A real TPM 2.0 (swtpm) provisioned like Azure's paravisor does, and
    /// `kind = "auto"` instead of the simulated TEE ([`crate::vtpm`]).
    pub azure_vtpm: bool,
    /// The image is built elsewhere ([`crate::mkosi`]): only the broker,
    /// its resources and CA; no initramfs.
    pub external_image: bool,
    /// `luks_uuid` of the data volume (pinned: a random volume key, opened
    /// by keyslot).
    pub luks_uuid: Option<String>,
}

impl AgentBench {
    /// Builds the binaries, the kernel, the workload image, the broker's
    /// resources and the initramfs (whose config pins the broker's CA), and
    /// starts the broker.
    pub fn new(dir: &Path) -> Result<Self> {
        Self::with_integrity(dir, false)
    }

    /// Like [`new`](Self::new), with `integrity` set on the data volume.
    pub fn with_integrity(dir: &Path, integrity: bool) -> Result<Self> {
        Self::with_options(
            dir,
            Options {
                integrity,
                ..Options::default()
            },
        )
    }

    /// Like [`new`](Self::new), with the image built as `options` say.
    pub fn with_options(dir: &Path, options: Options) -> Result<Self> {
        let mut bins = build_binaries()?;
        if let Some(other) = &options.cvm_init {
            bins.cvm_init = other.clone();
        }
        let kernel = kernel::fetch_kernel(&crate::cache_dir())?;
        std::fs::create_dir_all(dir)?;
        let res = dir.join("resources/default");
        std::fs::create_dir_all(res.join("disk"))?;
        std::fs::create_dir_all(res.join("tls"))?;
        let tls = workload::make_tls(dir)?;
        std::fs::copy(&tls.cert, res.join("tls/cert"))?;
        std::fs::copy(&tls.key, res.join("tls/key"))?;
        let mut disk_secret = vec![0u8; 64];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut disk_secret))
            .context("reading /dev/urandom")?;
        std::fs::write(res.join("disk/data"), &disk_secret)?;
        std::fs::create_dir_all(res.join("app"))?;
        std::fs::write(res.join("app/token"), b"app-token-from-the-broker")?;

        let root_image = dir.join("workload.img");
        let verity = if options.unverified_root {
            rootfs::workload_image(&root_image)?;
            None
        } else {
            Some(rootfs::verity_workload_image(&root_image)?)
        };
        let mut bench = AgentBench {
            kernel,
            bins,
            dir: dir.to_owned(),
            initrd: dir.join(match options.generator {
                None => "cvm-init.cpio",
                Some(Generator::Dracut) => "initrd-dracut.img",
                Some(Generator::InitramfsTools) => "initrd-mkinitramfs.img",
            }),
            root_image,
            tls,
            disk_secret,
            broker_port: free_port()?,
            integrity: options.integrity,
            luks_uuid: options.luks_uuid,
            host_data: options.host_data,
            init_data: None,
            verity,
            generator: options.generator,
            generated: None,
            broker: None,
            vtpm: match options.azure_vtpm {
                true => Some((
                    crate::vtpm::Vtpm::provision(dir)?,
                    crate::vtpm::spawn_imds()?,
                )),
                false => None,
            },
            swtpm: std::sync::Mutex::new(None),
        };
        bench.start_broker(&[])?;
        match options.generator {
            _ if options.external_image => {}
            None => bench.build_initramfs()?,
            Some(g) => bench.generated = Some(bench.generate_initrd(g)?),
        }
        Ok(bench)
    }

    /// (Re)starts the broker on the same port with the same CA.
    pub fn start_broker(&mut self, faults: &[&str]) -> Result<()> {
        self.stop_broker();
        let ready = self.dir.join("broker.url");
        let _ = std::fs::remove_file(&ready);
        let mut cmd = Command::new(&self.bins.kbs_dev);
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.broker_port))
            .arg("--resources")
            .arg(self.dir.join("resources"))
            .arg("--tls-dir")
            .arg(self.dir.join("broker-tls"))
            .arg("--keep-ca")
            .arg("--ready-file")
            .arg(&ready);
        for f in faults {
            cmd.args(["--fault", f]);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))?;
        let child = cmd.stdout(Stdio::null()).stderr(log).spawn()?;
        self.broker = Some(child);
        let start = Instant::now();
        while !ready.exists() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!(
                    "kbs-dev did not start; see {}",
                    self.dir.join("broker.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn stop_broker(&mut self) {
        if let Some(mut c) = self.broker.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The broker's log so far.
    pub fn broker_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    /// The agent's config, as baked into the (measured) initramfs. With a
    /// generator, `cvm-init boot` runs under the initrd's own init: no
    /// `[boot]` and `[network]` (PID 1 only), and the volume is mounted
    /// below that initrd's root mount point.
    pub fn config(&self) -> String {
        let mut config = self.base_config();
        if let Some((_, imds)) = &self.vtpm {
            config = config.replace(
                "kind = \"simulated\"\nallow_simulated = true\n",
                &format!("kind = \"auto\"\nazure_imds = \"http://10.0.2.2:{imds}\"\n"),
            );
        }
        if let Some(h) = &self.host_data {
            config = config.replace(
                "allow_simulated = true\n",
                &format!("allow_simulated = true\nsimulated_host_data = \"{h}\"\n"),
            );
            config.push_str(&format!(
                "\n[init_data]\npath = \"/sys/firmware/qemu_fw_cfg/by_name/{INIT_DATA_FW_CFG}/raw\"\n\
                 required = true\nallow = [\"secret\"]\n"
            ));
        }
        config
    }

    fn base_config(&self) -> String {
        let (sysroot, pid1, root) = match (self.generator, &self.verity) {
            (None, Some(v)) => ("/sysroot", format!("{PID1_CONFIG}{}", v.config()), ""),
            (None, None) => ("/sysroot", PID1_CONFIG.to_owned(), ""),
            // The initrd's own units mount the root from root= on the
            // command line; the bench's workload image is not verified there.
            (Some(g), _) => (g.sysroot(), String::new(), GENERATOR_ROOT),
        };
        let debug = if self.generator.is_none() && self.verity.is_none() {
            "debug_image = true\n"
        } else {
            ""
        };
        format!(
            r#"# cvm-init VM bench: simulated TEE, broker on the host via QEMU's 10.0.2.2
[broker]
url = "https://10.0.2.2:{port}"
ca_cert = "broker-ca.pem"
connect_timeout_secs = 3
request_timeout_secs = 10
deadline_secs = 15

[attester]
kind = "simulated"
allow_simulated = true
{pid1}
[[volume]]
name = "data"
device = "/dev/vdb"
key = "{DISK_RESOURCE}"
key_derivation = "hkdf"
format = true
filesystem = "ext4"
mountpoint = "{sysroot}/data"
integrity = {integrity}
{luks_uuid}
[[secret]]
resource = "default/tls/cert"
path = "/run/cvm-init/tls/cert.pem"
mode = "0640"

[[secret]]
resource = "default/tls/key"
path = "/run/cvm-init/tls/key.pem"

[failure]
action = "halt"
{debug}{root}"#,
            port = self.broker_port,
            integrity = self.integrity,
            luks_uuid = match &self.luks_uuid {
                Some(u) => format!("luks_uuid = \"{u}\"\n"),
                None => String::new(),
            }
        )
    }

    /// The initrd from the installed package: this bench's config and the
    /// broker's CA become `/etc/cvm-init`; dracut also gets a
    /// systemd-networkd file (DHCP on QEMU's user network).
    fn generate_initrd(&self, generator: Generator) -> Result<distro_initrd::Built> {
        if crate::package::dpkg_status().is_none_or(|s| s != "install ok installed") {
            bail!(
                "the {} package is not installed on this host (package::Installed)",
                crate::package::PACKAGE
            );
        }
        let etc = self.dir.join("etc-cvm-init");
        std::fs::create_dir_all(&etc)?;
        std::fs::write(etc.join("config.toml"), self.config())?;
        std::fs::copy(
            self.dir.join("broker-tls/ca.pem"),
            etc.join("broker-ca.pem"),
        )?;
        let network = self.dir.join("10-vm-bench.network");
        std::fs::write(&network, NETWORKD_FILE)?;
        distro_initrd::build(
            &self.kernel,
            &distro_initrd::Request {
                generator,
                config_dir: Some(&etc),
                network_file: Some(&network),
                scratch: &self.dir.join("initrd-scratch"),
                out: &self.initrd,
            },
        )
    }

    /// The line cvm-init prints when its work is done: the handoff as
    /// PID 1, the end of `cvm-init boot` under another init.
    pub fn done_marker(&self) -> &'static str {
        match self.generator {
            None => "timing: agent start to handoff",
            Some(_) => "boot stage done in",
        }
    }

    /// Rebuilds the bench's own initramfs, e.g. after a test changed
    /// [`verity`](Self::verity) to bake a different config into it.
    pub fn rebuild_initramfs(&self) -> Result<()> {
        self.build_initramfs()
    }

    fn build_initramfs(&self) -> Result<()> {
        let modules = kernel::module_closure(&self.kernel, kernel::GUEST_MODULES)?;
        let mut t = Initramfs::new()?;
        let mkfs = crate::find_tool("mkfs.ext4").context("mkfs.ext4 (package e2fsprogs)")?;
        t.add_binary_with_libs(&self.bins.cvm_init, "/init")?
            .add_binary_with_libs(&mkfs, "/sbin/mkfs.ext4")?
            .add_dir("/sysroot", 0o755)?
            .add_dir("/run", 0o755)?
            .add_dir("/proc", 0o555)?
            .add_dir("/sys", 0o555)?
            .add_dir("/dev", 0o755)?
            .add_bytes(self.config().as_bytes(), "/etc/cvm-init/config.toml", 0o644)?
            .add_file(
                &self.dir.join("broker-tls/ca.pem"),
                "/etc/cvm-init/broker-ca.pem",
                0o644,
            )?
            .add_modules(&self.kernel, &modules)?;
        if Path::new("/etc/mke2fs.conf").is_file() {
            t.add_file(Path::new("/etc/mke2fs.conf"), "/etc/mke2fs.conf", 0o644)?;
        }
        t.write_cpio(&self.initrd)
    }

    /// A blank (all-zero, sparse) disk image.
    pub fn blank_disk(&self, name: &str, size_mb: u64) -> Result<PathBuf> {
        let path = self.dir.join(name);
        std::fs::File::create(&path)?.set_len(size_mb << 20)?;
        Ok(path)
    }

    /// Boots with the workload root as /dev/vda and `data` as /dev/vdb;
    /// returns the VM and the host port forwarded to the workload's HTTPS.
    pub fn boot(&self, data: &Path, log_name: &str) -> Result<(Vm, u16)> {
        self.boot_with(&[data], "", 1024, log_name)
    }

    /// Like [`boot`](Self::boot) with more disks (`/dev/vdc`, ...), extra
    /// kernel command line words and a memory size. With a generator, the
    /// command line also names the root ([`ROOT_CMDLINE`]), which the
    /// bench's own initramfs takes from its config instead.
    pub fn boot_with(
        &self,
        disks: &[&Path],
        append: &str,
        memory_mb: u32,
        log_name: &str,
    ) -> Result<(Vm, u16)> {
        let port = free_port()?;
        let mut spec = VmSpec::new(self.kernel.boot_image(), &self.initrd);
        spec.disks = std::iter::once(self.root_image.clone())
            .chain(disks.iter().map(|d| d.to_path_buf()))
            .collect();
        spec.hostfwd = vec![(port, workload::HTTPS_PORT)];
        spec.memory_mb = memory_mb;
        if self.generator.is_some() {
            spec.append = format!("{} {ROOT_CMDLINE}", spec.append);
        }
        if !append.is_empty() {
            spec.append = format!("{} {append}", spec.append);
        }
        spec.log = Some(self.dir.join(log_name));
        if let Some((vtpm, _)) = &self.vtpm {
            let running = vtpm.start(&self.dir)?;
            spec.extra_args.extend(running.qemu_args());
            // QEMU loads the initramfs at the top of low memory, over the
            // end of the ACPI tables once the TPM's 64 KiB event log pushes
            // them past the 160 KiB it reserves: the kernel then finds no
            // TPM in ACPI. Probe the TIS at its fixed address instead.
            spec.append = format!("{} tpm_tis.force=1 tpm_tis.interrupts=0", spec.append);
            *self.swtpm.lock().unwrap_or_else(|p| p.into_inner()) = Some(running);
        }
        if let Some(doc) = &self.init_data {
            spec.extra_args.push("-fw_cfg".into());
            spec.extra_args
                .push(format!("name={INIT_DATA_FW_CFG},file={}", doc.display()));
        }
        Ok((Vm::boot(spec)?, port))
    }

    /// Whether `image` holds any of the secrets the broker handed out.
    pub fn leaked_secrets(&self, image: &Path) -> Result<Vec<&'static str>> {
        let mut found = Vec::new();
        if scan::image_contains(image, &self.disk_secret)? {
            found.push("the disk's brokered secret");
        }
        let key_pem = std::fs::read_to_string(&self.tls.key)?;
        if let Some(line) = key_pem.lines().nth(1) {
            if scan::image_contains(image, line.as_bytes())? {
                found.push("the TLS private key");
            }
        }
        Ok(found)
    }
}

impl Drop for AgentBench {
    fn drop(&mut self) {
        self.stop_broker();
    }
}

/// Waits for `pattern`, failing early on any failure marker.
pub fn expect(vm: &mut Vm, pattern: &str, timeout: Duration) -> Result<String> {
    let mut patterns = vec![pattern];
    patterns.extend_from_slice(FAILURE_MARKERS);
    let (i, line) = vm.wait_for_any(&patterns, timeout)?;
    if i != 0 {
        bail!(
            "expected {pattern:?}, got {line:?}\n--- console ---\n{}",
            vm.output()
        );
    }
    Ok(line)
}

/// The number after `key` in a console line, e.g. "handoff 812 ms".
pub fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// What one good boot showed on the console.
#[derive(Debug, Clone)]
pub struct GoodBoot {
    /// The volume line ("volume data: Provisioned ...").
    pub volume: String,
    /// "wrote <text>" or "read <text>".
    pub workload: String,
    /// The action the workload read from `/run/cvm-init/volumes/data.json`
    /// (`provisioned`, `resumed` or `unlocked`).
    pub volume_status: String,
    /// Agent start to `switch_root` as PID 1, or to the end of `cvm-init
    /// boot` under another init, as the agent measured it.
    pub handoff_ms: Option<u64>,
    /// Time the agent spent on the volume (validate, unlock or provision, mkfs).
    pub volume_ms: Option<u64>,
    /// QEMU start to the workload serving HTTPS.
    pub to_serving: Duration,
    /// The certificate the workload served equals the broker's.
    pub served_broker_cert: bool,
    /// cvm-init's `/run/cvm-init/boot-timing.json`, as the workload printed it.
    pub timeline: Option<serde_json::Value>,
}

/// The boot timeline the workload printed ("WORKLOAD: timing {...}").
pub fn timeline_in(console: &str) -> Option<serde_json::Value> {
    console.lines().find_map(|l| {
        let json = &l[l.find("WORKLOAD: timing ")? + "WORKLOAD: timing ".len()..];
        serde_json::from_str(json.trim()).ok()
    })
}

/// Boots `data` and follows one boot to the workload serving HTTPS with the
/// delivered key; kills QEMU afterwards.
pub fn good_boot(bench: &AgentBench, data: &Path, log_name: &str) -> Result<GoodBoot> {
    good_boot_with(bench, data, "", log_name)
}

/// [`good_boot`] with extra kernel command line words.
pub fn good_boot_with(
    bench: &AgentBench,
    data: &Path,
    append: &str,
    log_name: &str,
) -> Result<GoodBoot> {
    let (mut vm, port) = bench.boot_with(&[data], append, 1024, log_name)?;
    let t = Duration::from_secs(180);
    let mut patterns = vec![
        "volume data: Provisioned ",
        "volume data: Unlocked ",
        "volume data: ResumedProvisioning ",
    ];
    patterns.extend_from_slice(FAILURE_MARKERS);
    let (i, volume) = vm.wait_for_any(&patterns, t)?;
    if i > 2 {
        bail!("expected the volume line, got {volume:?}\n{}", vm.output());
    }
    let done = expect(&mut vm, bench.done_marker(), t)?;
    let status = expect(&mut vm, "WORKLOAD: volume ", t)?;
    let mut patterns = vec!["WORKLOAD: wrote ", "WORKLOAD: read "];
    patterns.extend_from_slice(FAILURE_MARKERS);
    let (i, workload) = vm.wait_for_any(&patterns, t)?;
    if i > 1 {
        bail!(
            "expected the workload's file line, got {workload:?}\n{}",
            vm.output()
        );
    }
    expect(&mut vm, "WORKLOAD: serving https", t)?;
    let to_serving = vm.elapsed();
    let served = workload::peer_certificate(port, Duration::from_secs(60))?;
    let broker_cert = std::fs::read_to_string(&bench.tls.cert)?;
    let timeline = timeline_in(&vm.output());
    vm.kill()?;
    Ok(GoodBoot {
        volume_status: status
            .split("WORKLOAD: volume ")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        volume_ms: number_after(&volume, " in "),
        volume,
        workload: workload
            .split("WORKLOAD: ")
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned(),
        handoff_ms: number_after(&done, "handoff").or_else(|| number_after(&done, "done in")),
        to_serving,
        served_broker_cert: served == broker_cert,
        timeline,
    })
}

/// `cryptsetup open` in the guest, timed by the workload (`cvm_bench=1`).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CryptsetupOpens {
    /// Of a keyslot with cryptsetup's default PBKDF (argon2id, calibrated
    /// in this VM).
    pub argon2id_ms: u64,
    /// Of a PBKDF2 keyslot with 1000 iterations.
    pub pbkdf2_1000_ms: u64,
}

/// Boots the unlock boot of `data` with a spare disk on which the workload
/// formats and opens the two keyslots ([`CryptsetupOpens`]).
pub fn cryptsetup_opens(
    bench: &AgentBench,
    data: &Path,
    log_name: &str,
) -> Result<CryptsetupOpens> {
    let spare = bench.blank_disk("cryptsetup-bench.img", 32)?;
    let (mut vm, _) = bench.boot_with(&[data, &spare], "cvm_bench=1", 2048, log_name)?;
    let t = Duration::from_secs(600);
    let argon = expect(&mut vm, "BENCH: argon2id-default open", t)?;
    let pbkdf2 = expect(&mut vm, "BENCH: pbkdf2-1000 open", t)?;
    vm.kill()?;
    let ms =
        |line: &str| number_after(line, "open").with_context(|| format!("no time in {line:?}"));
    Ok(CryptsetupOpens {
        argon2id_ms: ms(&argon)?,
        pbkdf2_1000_ms: ms(&pbkdf2)?,
    })
}

/// Boots `data` expecting the agent to refuse; returns the failure line
/// after QEMU powered off.
pub fn failed_boot(bench: &AgentBench, disks: &[&Path], log_name: &str) -> Result<String> {
    let (mut vm, _) = bench.boot_with(disks, "", 1024, log_name)?;
    let t = Duration::from_secs(180);
    let (i, line) = vm.wait_for_any(&["BOOT FAILED", "WORKLOAD: started"], t)?;
    if i != 0 {
        bail!("the boot went on to the workload: {line}\n{}", vm.output());
    }
    vm.wait_exit(Duration::from_secs(60))
        .context("the VM did not power off after the failure")?;
    Ok(line)
}

/// SHA-256 of a file, to show a disk was not written.
pub fn file_digest(path: &Path) -> Result<String> {
    let out = crate::output(Command::new("sha256sum").arg(path))?;
    Ok(out.split_whitespace().next().unwrap_or_default().to_owned())
}
