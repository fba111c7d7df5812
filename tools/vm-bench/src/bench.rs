//! `scripts/bench`: the boot-time benchmark of issue 13. In one run, with
//! the same kernel, QEMU and workload image, it boots N times each
//!   (a) a plain busybox initramfs that mounts the same root and a plain
//!       data disk and hands over with no agent;
//!   (b) the cvm-init unlock boot (the disk (c) provisioned);
//!   (c) the cvm-init first boot of a blank sparse disk (8 GiB);
//! and once per repetition the `cryptsetup open` comparison. It prints a
//! table of medians and ratios, writes it as JSON and draws every boot's
//! timeline as an SVG.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::agent::{self, AgentBench, CryptsetupOpens};
use crate::initramfs::Initramfs;
use crate::kernel;
use crate::qemu::{free_port, Vm, VmSpec};
use crate::{rootfs, workload};

mod svg;
pub mod table;

/// What `scripts/bench` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub workdir: PathBuf,
    /// Where `bench.json`, `bench.svg` and `bench.txt` go.
    pub out: PathBuf,
    pub reps: usize,
    /// Size of (c)'s blank disk.
    pub blank_gib: u64,
    /// Report the release binary's size (`target/release/cvm-init`,
    /// which scripts/bench builds first).
    pub release: bool,
}

/// Which boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Plain,
    Unlock,
    FirstBoot,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Plain => "(a) plain initramfs, no agent",
            Kind::Unlock => "(b) cvm-init, unlock boot",
            Kind::FirstBoot => "(c) cvm-init, first boot of a blank disk",
        }
    }
}

/// A phase on the guest's clock (ms since the kernel started).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Span {
    pub name: String,
    pub start_ms: f64,
    pub ms: f64,
    pub depth: u32,
}

/// One boot.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub kind: Kind,
    pub rep: usize,
    /// QEMU start to the workload serving HTTPS (host clock).
    pub to_serving_ms: f64,
    /// The init (cvm-init or the plain script) started, guest clock.
    pub init_start_ms: f64,
    /// The handoff (switch_root), guest clock.
    pub handoff_ms: f64,
    /// The workload printed "serving", guest clock.
    pub serving_ms: Option<f64>,
    /// The agent's phases (empty for the plain boot).
    pub phases: Vec<Span>,
}

impl Sample {
    /// Init start to handoff.
    pub fn agent_ms(&self) -> f64 {
        self.handoff_ms - self.init_start_ms
    }

    /// Key in hand to mapping active: the end of the broker session (the
    /// last resource is in) to the end of the volume's activation.
    pub fn unlock_ms(&self) -> Option<f64> {
        let broker = self.top("broker")?;
        let key_in_hand = broker.start_ms + broker.ms;
        let activate = self
            .phases
            .iter()
            .find(|p| p.name == "activate" && p.start_ms >= key_in_hand)?;
        Some(activate.start_ms + activate.ms - key_in_hand)
    }

    /// The key-free examination of the volumes (locate, probe, header
    /// copy, shape check), which runs alongside the broker session.
    pub fn examine_ms(&self) -> Option<f64> {
        self.top("examine").map(|p| p.ms)
    }

    fn top(&self, name: &str) -> Option<&Span> {
        self.phases.iter().find(|p| p.depth == 0 && p.name == name)
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: String,
    pub kernel: String,
    pub reps: usize,
    pub blank_gib: u64,
    pub samples: Vec<Sample>,
    pub cryptsetup: Vec<CryptsetupOpens>,
    pub sizes: Sizes,
}

/// The binary and the initramfs delta (issue 13's size targets).
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// The release binary (`cargo build --release`, what `cargo deb`
    /// ships: LTO, opt-level "s", stripped), if scripts/bench built it.
    pub release_binary_bytes: Option<u64>,
    /// The binary the VM boots (profile `vm`: no LTO, opt-level 2).
    pub binary_bytes: u64,
    /// The agent's initramfs minus the plain one, each compressed with
    /// `zstd -19` (Debian's and mkosi's initrds are zstd).
    pub initramfs_delta_zstd_bytes: u64,
    /// The largest files only the agent's initramfs has, compressed alone.
    pub largest: Vec<(String, u64)>,
}

/// The plain boot's `/init`: the modules, the same root read-only, a plain
/// ext4 data disk, the TLS files from the initramfs on a tmpfs `/run`, the
/// same static network, `switch_root`. What a VM without cvm-init does.
const PLAIN_INIT: &str = r#"#!/bin/sh
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "PLAIN: start at $(cut -d' ' -f1 /proc/uptime) s"
while read -r m; do insmod "$m" 2>/dev/null; done </etc/cvm-init/modules
for d in vda vdb; do
    i=0
    until [ -b /dev/$d ] || [ $i -gt 200 ]; do i=$((i + 1)); sleep 0.05; done
done
mount -t ext4 -o ro /dev/vda /sysroot || echo "PLAIN: FAIL root"
mount -t ext4 /dev/vdb /sysroot/data || echo "PLAIN: FAIL data"
mount -t tmpfs -o mode=0755 tmpfs /sysroot/run
mkdir -p -m 0700 /sysroot/run/cvm-init/tls
cp /tls/cert.pem /tls/key.pem /sysroot/run/cvm-init/tls/
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "PLAIN: handoff at $(cut -d' ' -f1 /proc/uptime) s"
exec switch_root /sysroot /sbin/init
"#;

/// The modules the plain boot needs: disks, network, ext4.
const PLAIN_MODULES: &[&str] = &["virtio_pci", "virtio_blk", "virtio_net", "ext4"];

/// Runs the benchmark.
pub fn run(opts: &Options) -> Result<Report> {
    ensure!(opts.reps >= 1, "--reps must be at least 1");
    std::fs::create_dir_all(&opts.out)?;
    std::fs::create_dir_all(&opts.workdir)?;
    let workdir = opts.workdir.canonicalize()?;
    println!("bench: building the images in {}", workdir.display());
    let bench = AgentBench::new(&workdir)?;
    let plain_initrd = workdir.join("plain.cpio");
    build_plain_initramfs(&bench, &plain_initrd)?;
    let plain_data = workdir.join("plain-data.img");
    let empty = tempfile::tempdir()?;
    rootfs::write_ext4(empty.path(), &plain_data, 64, "data")?;

    let mut samples = Vec::new();
    let mut cryptsetup = Vec::new();
    for rep in 0..opts.reps {
        println!("bench: repetition {} of {}", rep + 1, opts.reps);
        let s = plain_boot(&bench, &plain_initrd, &plain_data, rep)?;
        println!(
            "  {}: serving after {:.0} ms",
            Kind::Plain.label(),
            s.to_serving_ms
        );
        samples.push(s);

        let disk = bench.blank_disk(&format!("blank-{rep}.img"), opts.blank_gib << 10)?;
        for kind in [Kind::FirstBoot, Kind::Unlock] {
            let s = agent_boot(&bench, &disk, kind, rep)?;
            println!(
                "  {}: agent {:.0} ms, serving after {:.0} ms",
                kind.label(),
                s.agent_ms(),
                s.to_serving_ms
            );
            samples.push(s);
        }
        let opens = agent::cryptsetup_opens(&bench, &disk, &format!("cryptsetup-{rep}.log"))?;
        println!(
            "  cryptsetup open: argon2id {} ms, pbkdf2-1000 {} ms",
            opens.argon2id_ms, opens.pbkdf2_1000_ms
        );
        cryptsetup.push(opens);
        std::fs::remove_file(&disk)?;
    }
    let report = Report {
        machine: machine(),
        kernel: bench.kernel.version.clone(),
        reps: opts.reps,
        blank_gib: opts.blank_gib,
        samples,
        cryptsetup,
        sizes: sizes(&bench, &plain_initrd, opts.release)?,
    };
    let text = table::render(&report);
    println!("\n{text}");
    std::fs::write(opts.out.join("bench.txt"), &text)?;
    std::fs::write(
        opts.out.join("bench.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(opts.out.join("bench.svg"), svg::render(&report))?;
    println!(
        "bench: wrote bench.txt, bench.json and bench.svg in {}; console logs in {}",
        opts.out.display(),
        workdir.display()
    );
    Ok(report)
}

fn build_plain_initramfs(bench: &AgentBench, out: &Path) -> Result<()> {
    let modules = kernel::module_closure(&bench.kernel, PLAIN_MODULES)?;
    let mut t = Initramfs::new()?;
    t.add_busybox()?
        .add_bytes(PLAIN_INIT.as_bytes(), "/init", 0o755)?
        .add_dir("/sysroot", 0o755)?
        .add_file(&bench.tls.cert, "/tls/cert.pem", 0o644)?
        .add_file(&bench.tls.key, "/tls/key.pem", 0o600)?
        .add_modules(&bench.kernel, &modules)?;
    t.write_cpio(out)
}

/// Seconds in a console line after `key` ("... at 2.345 s"), as ms.
fn uptime_ms(line: &str, key: &str) -> Option<f64> {
    let rest = &line[line.find(key)? + key.len()..];
    let secs: f64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(secs * 1000.0)
}

fn plain_boot(bench: &AgentBench, initrd: &Path, data: &Path, rep: usize) -> Result<Sample> {
    let port = free_port()?;
    let mut spec = VmSpec::new(bench.kernel.boot_image(), initrd);
    spec.disks = vec![bench.root_image.clone(), data.to_owned()];
    spec.hostfwd = vec![(port, workload::HTTPS_PORT)];
    spec.log = Some(bench.dir.join(format!("plain-{rep}.log")));
    let mut vm = Vm::boot(spec)?;
    let t = Duration::from_secs(180);
    let start = vm.wait_for("PLAIN: start at", t)?;
    let handoff = vm.wait_for("PLAIN: handoff at", t)?;
    let serving = serving(&mut vm)?;
    let to_serving_ms = vm.elapsed().as_secs_f64() * 1000.0;
    vm.kill()?;
    Ok(Sample {
        kind: Kind::Plain,
        rep,
        to_serving_ms,
        init_start_ms: uptime_ms(&start, "start at").context("no time in PLAIN: start")?,
        handoff_ms: uptime_ms(&handoff, "handoff at").context("no time in PLAIN: handoff")?,
        serving_ms: uptime_ms(&serving, "8443 at"),
        phases: Vec::new(),
    })
}

fn serving(vm: &mut Vm) -> Result<String> {
    let (i, line) = vm.wait_for_any(
        &[
            "WORKLOAD: serving https",
            "WORKLOAD: FAIL",
            "PLAIN: FAIL",
            "Kernel panic",
        ],
        Duration::from_secs(180),
    )?;
    ensure!(
        i == 0,
        "the workload did not serve: {line}\n{}",
        vm.output()
    );
    Ok(line)
}

fn agent_boot(bench: &AgentBench, disk: &Path, kind: Kind, rep: usize) -> Result<Sample> {
    let name = match kind {
        Kind::FirstBoot => "first",
        _ => "unlock",
    };
    let log = format!("{name}-{rep}.log");
    let boot = agent::good_boot(bench, disk, &log)?;
    let expected = if kind == Kind::FirstBoot {
        "provisioned"
    } else {
        "unlocked"
    };
    ensure!(
        boot.volume_status == expected,
        "{}: the volume was {:?}, expected {expected}",
        kind.label(),
        boot.volume_status
    );
    let timeline = boot
        .timeline
        .context("the workload printed no boot timeline (WORKLOAD: timing)")?;
    let console = std::fs::read_to_string(bench.dir.join(&log))?;
    let serving_ms = console
        .lines()
        .find(|l| l.contains("WORKLOAD: serving https"))
        .and_then(|l| uptime_ms(l, "8443 at"));
    Ok(Sample {
        kind,
        rep,
        to_serving_ms: boot.to_serving.as_secs_f64() * 1000.0,
        init_start_ms: number(&timeline, "agent_start_ms")?,
        handoff_ms: number(&timeline, "end_ms")?,
        serving_ms,
        phases: spans(&timeline)?,
    })
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("boot-timing.json has no number {key:?}"))
}

fn spans(timeline: &Value) -> Result<Vec<Span>> {
    let phases = timeline["phases"]
        .as_array()
        .context("boot-timing.json has no phases")?;
    phases
        .iter()
        .map(|p| {
            Ok(Span {
                name: p["name"]
                    .as_str()
                    .context("a phase without a name")?
                    .to_owned(),
                start_ms: number(p, "start_ms")?,
                ms: p["ms"].as_f64().unwrap_or(0.0),
                depth: u32::try_from(p["depth"].as_u64().unwrap_or(0)).unwrap_or(0),
            })
        })
        .collect()
}

/// "2 cores of <model>, <MiB> MiB; QEMU x.y (TCG)".
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let qemu = crate::find_tool("qemu-system-x86_64")
        .ok()
        .and_then(|q| crate::output(Command::new(q).arg("--version")).ok())
        .and_then(|v| v.lines().next().map(str::to_owned))
        .unwrap_or_default();
    format!("{cores} cores of {model}; {qemu}, -accel tcg")
}

fn zstd_size(bytes: &[u8]) -> Result<u64> {
    use std::io::Write;
    let mut child = Command::new(crate::find_tool("zstd").context("zstd (package zstd)")?)
        .args(["-19", "-q", "-c"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("zstd stdin")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("zstd writer panicked"))??;
    ensure!(out.status.success(), "zstd failed");
    Ok(out.stdout.len() as u64)
}

fn sizes(bench: &AgentBench, plain_initrd: &Path, release: bool) -> Result<Sizes> {
    let agent = zstd_size(&std::fs::read(&bench.initrd)?)?;
    let plain = zstd_size(&std::fs::read(plain_initrd)?)?;
    // The files only the agent's initramfs has: the agent, its libraries,
    // mkfs, the device-mapper and crypto modules.
    let list = |cpio: &Path| -> Result<Vec<String>> {
        let out = crate::output(
            Command::new("sh")
                .arg("-c")
                .arg(format!("cpio -it --quiet < '{}'", cpio.display())),
        )?;
        Ok(out.lines().map(str::to_owned).collect())
    };
    let theirs = list(plain_initrd)?;
    let scratch = tempfile::tempdir()?;
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("cpio -id --quiet < '{}'", bench.initrd.display()))
        .current_dir(scratch.path())
        .status()?;
    ensure!(status.success(), "unpacking {}", bench.initrd.display());
    let mut largest = Vec::new();
    for f in list(&bench.initrd)? {
        let path = scratch.path().join(&f);
        if theirs.contains(&f) || !path.is_file() || path.is_symlink() {
            continue;
        }
        largest.push((f, zstd_size(&std::fs::read(&path)?)?));
    }
    largest.sort_by_key(|f| std::cmp::Reverse(f.1));
    largest.truncate(3);
    // target/vm/cvm-init -> target/release/cvm-init
    let release = bench
        .bins
        .cvm_init
        .parent()
        .and_then(Path::parent)
        .map(|target| target.join("release/cvm-init"))
        .filter(|_| release);
    Ok(Sizes {
        release_binary_bytes: release
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| m.len()),
        binary_bytes: std::fs::metadata(&bench.bins.cvm_init)?.len(),
        initramfs_delta_zstd_bytes: agent.saturating_sub(plain),
        largest,
    })
}
