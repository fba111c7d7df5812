//! vm-bench CLI: manual runs of the VM test bench.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use vm_bench::{bench, demo, kernel, qemu, rootfs, smoke};

#[derive(Parser)]
#[command(
    name = "vm-bench",
    about = "Debian kernel + busybox initramfs under QEMU (TCG)"
)]
struct Args {
    /// Cache directory for the kernel (default: $VM_BENCH_CACHE, else
    /// $CARGO_TARGET_DIR/vm-cache, else <workspace>/target/vm-cache).
    #[arg(long, global = true)]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Download and unpack the kernel (cached); print its paths.
    FetchKernel,
    /// Print the guest module list in load order (in-kernel paths).
    Modules,
    /// Check that the host tools are installed.
    Check,
    /// Boot the smoke test: modules, network, LUKS2 + ext4 on a blank disk.
    Smoke {
        /// Where to keep the initrd, disk and console log (default: a
        /// temporary directory, removed afterwards).
        #[arg(long)]
        workdir: Option<PathBuf>,
    },
    /// The demo: cvm-init as PID 1 provisions a blank disk, the workload
    /// writes a file and serves HTTPS with the delivered key; the second
    /// boot unlocks and reads it back; then the unlock benchmark.
    Demo {
        /// Keep the images and console logs here (default: target/demo,
        /// emptied first; kept either way).
        #[arg(long)]
        workdir: Option<PathBuf>,
        /// Skip the unlock benchmark (one boot less).
        #[arg(long)]
        no_bench: bool,
    },
    /// The boot-time benchmark (scripts/bench): plain boot vs cvm-init's
    /// unlock boot vs its first boot of a blank disk, N times each; a table
    /// of medians, bench.json and bench.svg.
    Bench {
        /// Images and console logs (kept).
        #[arg(long, default_value = "target/bench/work")]
        workdir: PathBuf,
        /// Where bench.txt, bench.json and bench.svg go.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Boots of each kind.
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Size of the blank disk of the first boot (sparse), GiB.
        #[arg(long, default_value_t = 8)]
        blank_gib: u64,
        /// Do not report the release binary's size (scripts/bench then
        /// skips its LTO build, as CI does).
        #[arg(long)]
        no_release: bool,
    },
    /// Write the demo workload's ext4 root image.
    WorkloadImage {
        /// Output image path.
        out: PathBuf,
    },
    /// Print the QEMU command line for a kernel + initrd (+ disks).
    QemuArgs {
        initrd: PathBuf,
        disks: Vec<PathBuf>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let cache = args.cache.unwrap_or_else(vm_bench::cache_dir);
    match args.cmd {
        Cmd::FetchKernel => {
            let k = kernel::fetch_kernel(&cache)?;
            println!("version  {}", k.version);
            println!("vmlinuz  {}", k.vmlinuz.display());
            if let Some(v) = &k.vmlinux {
                println!("vmlinux  {}", v.display());
            }
            println!("modules  {}", k.modules_dir.display());
        }
        Cmd::Modules => {
            let k = kernel::fetch_kernel(&cache)?;
            for m in kernel::module_closure(&k, kernel::GUEST_MODULES)? {
                println!("{}", m.strip_prefix(&k.modules_dir).unwrap_or(&m).display());
            }
        }
        Cmd::Check => {
            let missing = vm_bench::missing_tools();
            if !missing.is_empty() {
                bail!("missing host packages: {}", missing.join(" "));
            }
            println!("all host tools present");
        }
        Cmd::Smoke { workdir } => {
            let temp = tempfile::tempdir()?;
            let keep = workdir.is_some();
            let dir = workdir.unwrap_or_else(|| temp.path().to_path_buf());
            let r = smoke::run(&cache, &dir)?;
            println!("kernel {}", r.kernel);
            println!("modules ({}):", r.modules.len());
            for m in &r.modules {
                println!("  {m}");
            }
            println!("prepare (kernel + initramfs): {:.2?}", r.prepare);
            println!("QEMU start -> /init:          {:.2?}", r.to_init);
            println!("QEMU start -> SMOKE: ok:      {:.2?}", r.to_ok);
            println!("QEMU start -> exit:           {:.2?}", r.boot_total);
            if keep {
                println!("console log: {}", r.log.display());
            }
            println!("SMOKE: ok");
        }
        Cmd::Demo { workdir, no_bench } => {
            demo::run_in(workdir.as_deref(), !no_bench)?;
        }
        Cmd::Bench {
            workdir,
            out,
            reps,
            blank_gib,
            no_release,
        } => {
            bench::run(&bench::Options {
                workdir,
                out,
                reps,
                blank_gib,
                release: !no_release,
            })?;
        }
        Cmd::WorkloadImage { out } => {
            rootfs::workload_image(&out)?;
            println!("{}", out.display());
        }
        Cmd::QemuArgs { initrd, disks } => {
            let k = kernel::fetch_kernel(&cache)?;
            let mut spec = qemu::VmSpec::new(k.boot_image(), initrd);
            spec.disks = disks;
            let quoted: Vec<String> = spec
                .args()
                .into_iter()
                .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
                .collect();
            println!("qemu-system-x86_64 {}", quoted.join(" "));
        }
    }
    Ok(())
}
