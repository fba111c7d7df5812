//! QEMU under software emulation (`-accel tcg -cpu max`: KVM guests hang
//! on this machine kind), its serial console recorded line by line.
//!
//! Network: QEMU user networking only. The guest is 10.0.2.15/24 (by DHCP
//! or static), its gateway 10.0.2.2 reaches the host's 127.0.0.1, and
//! [`VmSpec::hostfwd`] forwards host loopback ports to guest ports.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// What to boot.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Kernel image (`Kernel::boot_image()`: a PVH ELF vmlinux or a bzImage).
    pub kernel: PathBuf,
    /// Initramfs (`Initramfs::write_cpio`).
    pub initrd: PathBuf,
    /// Raw images attached as virtio-blk, in order: `/dev/vda`, `/dev/vdb`, ...
    pub disks: Vec<PathBuf>,
    /// Kernel command line after `console=ttyS0 panic=-1`.
    pub append: String,
    /// Guest memory.
    pub memory_mb: u32,
    /// Guest vCPUs.
    pub cpus: u32,
    /// `(host port on 127.0.0.1, guest port)` TCP forwards.
    pub hostfwd: Vec<(u16, u16)>,
    /// Attach a virtio-net NIC on QEMU user networking.
    pub network: bool,
    /// Overall limit: every wait on this VM ends by `boot time + timeout`.
    pub timeout: Duration,
    /// Where to write the console log; `None`: a temporary file removed
    /// when the [`Vm`] is dropped.
    pub log: Option<PathBuf>,
    /// More QEMU arguments, appended as they are.
    pub extra_args: Vec<String>,
}

impl VmSpec {
    /// 1024 MiB, 2 vCPUs, network on, no disks, 120 s.
    pub fn new(kernel: impl Into<PathBuf>, initrd: impl Into<PathBuf>) -> VmSpec {
        VmSpec {
            kernel: kernel.into(),
            initrd: initrd.into(),
            disks: Vec::new(),
            append: String::new(),
            memory_mb: 1024,
            cpus: 2,
            hostfwd: Vec::new(),
            network: true,
            timeout: Duration::from_secs(120),
            log: None,
            extra_args: Vec::new(),
        }
    }

    /// The QEMU command line.
    pub fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = [
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ]
        .map(String::from)
        .to_vec();
        a.extend([
            "-m".into(),
            self.memory_mb.to_string(),
            "-smp".into(),
            self.cpus.to_string(),
            "-kernel".into(),
            self.kernel.display().to_string(),
            "-initrd".into(),
            self.initrd.display().to_string(),
            "-append".into(),
            format!("console=ttyS0 panic=-1 {}", self.append)
                .trim()
                .to_string(),
        ]);
        if self.network {
            let mut netdev = "user,id=n0".to_string();
            for (host, guest) in &self.hostfwd {
                netdev.push_str(&format!(",hostfwd=tcp:127.0.0.1:{host}-:{guest}"));
            }
            a.extend(["-netdev".into(), netdev]);
            a.extend(["-device".into(), "virtio-net-pci,netdev=n0".into()]);
        }
        for d in &self.disks {
            // A comma in a path would be read as an option separator.
            let p = d.display().to_string().replace(',', ",,");
            a.extend(["-drive".into(), format!("file={p},format=raw,if=virtio")]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// A free TCP port on 127.0.0.1 (for [`VmSpec::hostfwd`]); another process
/// could take it before QEMU binds it, which is unlikely.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[derive(Default)]
struct ConsoleState {
    lines: Vec<String>,
    /// When each line was complete, from QEMU's start.
    times: Vec<Duration>,
    partial: Vec<u8>,
    stderr: Vec<String>,
    /// The console stream reached end of file (QEMU exited).
    closed: bool,
}

#[derive(Default)]
struct Console {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

impl Console {
    fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        // A reader thread cannot panic while holding the lock; recover anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running guest. Dropping it kills QEMU.
pub struct Vm {
    child: Child,
    console: Arc<Console>,
    readers: Vec<JoinHandle<()>>,
    started: Instant,
    deadline: Instant,
    /// Index of the first console line the next `wait_for` looks at.
    cursor: usize,
    log: PathBuf,
    _log_temp: Option<tempfile::TempPath>,
    exit: Option<ExitStatus>,
    /// Kept to boot again after an emulator failure.
    spec: VmSpec,
    restarted: bool,
}

impl Vm {
    /// Starts QEMU; returns at once (the guest boots in the background).
    pub fn boot(spec: VmSpec) -> Result<Vm> {
        let (log, log_temp) = match &spec.log {
            Some(p) => (p.clone(), None),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("vm-bench-console-")
                    .suffix(".log")
                    .tempfile()?;
                let path = t.into_temp_path();
                (path.to_path_buf(), Some(path))
            }
        };
        let started = Instant::now();
        let (child, console, readers) = spawn_qemu(&spec, &log, started)?;
        Ok(Vm {
            child,
            console,
            readers,
            started,
            deadline: started + spec.timeout,
            cursor: 0,
            log,
            _log_temp: log_temp,
            exit: None,
            spec,
            restarted: false,
        })
    }

    /// QEMU exited by itself before the kernel ran init and without a
    /// kernel panic: the emulator, not the guest's software, failed (a TCG
    /// guest that triple-faults during early boot exits silently under
    /// `-no-reboot`; seen once in CI while the kernel probed PCI). Nothing
    /// of the guest's userspace ran, so no disk was touched and booting
    /// again is the same experiment. Done once per VM, loudly.
    fn restart_after_emulator_failure(&mut self) -> Result<bool> {
        if self.exit.is_some() {
            // Killed by us, or already seen to exit: not an accident.
            return Ok(false);
        }
        let status = self.child.wait()?;
        self.exit = Some(status);
        let reached_init = self
            .console
            .lock()
            .lines
            .iter()
            .any(|l| l.contains(" as init process") || l.contains("Kernel panic"));
        if self.restarted || reached_init {
            return Ok(false);
        }
        self.join_readers();
        eprintln!(
            "vm-bench: QEMU exited ({status}) after {:.1?} while the kernel was still booting, \
             before init ran; booting the same VM once more. The failed attempt's console \
             tail:\n{}",
            self.started.elapsed(),
            self.console_tail()
        );
        let started = Instant::now();
        let (child, console, readers) = spawn_qemu(&self.spec, &self.log, started)?;
        self.child = child;
        self.console = console;
        self.readers = readers;
        self.started = started;
        self.deadline = started + self.spec.timeout;
        self.cursor = 0;
        self.exit = None;
        self.restarted = true;
        Ok(true)
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether QEMU was booted a second time after exiting before init.
    pub fn restarted(&self) -> bool {
        self.restarted
    }

    /// Path of the console log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Every complete console line so far (`\r` removed).
    pub fn lines(&self) -> Vec<String> {
        self.console.lock().lines.clone()
    }

    /// Every complete console line so far with the time since QEMU's
    /// start at which it arrived: for boot-time breakdowns.
    pub fn timed_lines(&self) -> Vec<(Duration, String)> {
        let s = self.console.lock();
        s.times
            .iter()
            .copied()
            .zip(s.lines.iter().cloned())
            .collect()
    }

    /// The whole console so far, one line per line, QEMU's own stderr after.
    pub fn output(&self) -> String {
        let s = self.console.lock();
        let mut out = s.lines.join("\n");
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&s.partial));
        for l in &s.stderr {
            out.push_str(&format!("\n[qemu] {l}"));
        }
        out
    }

    /// Waits for a console line containing `pattern` and returns it.
    ///
    /// Lines are consumed in order: the search starts after the line the
    /// previous successful wait returned, so successive waits match
    /// successive events. Fails on timeout (`timeout`, capped by the
    /// spec's overall one) or when QEMU exits first, with the console's
    /// tail in the error.
    pub fn wait_for(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        self.wait_for_any(&[pattern], timeout).map(|(_, line)| line)
    }

    /// Like [`Vm::wait_for`] with several patterns: returns the index of
    /// the first pattern found in the earliest matching line, and the
    /// line. Handy to stop at a failure marker instead of timing out.
    pub fn wait_for_any(
        &mut self,
        patterns: &[&str],
        timeout: Duration,
    ) -> Result<(usize, String)> {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        loop {
            match self.wait_on_console(patterns, deadline)? {
                Some(found) => return Ok(found),
                None if self.restart_after_emulator_failure()? => continue,
                None => {
                    let exit = self
                        .exit
                        .map_or_else(|| "unknown status".to_string(), |st| st.to_string());
                    bail!(
                        "QEMU exited ({exit}) after {:.1?} before printing any of {patterns:?}; \
                         console tail:\n{}",
                        self.started.elapsed(),
                        self.console_tail()
                    );
                }
            }
        }
    }

    /// One wait on the current QEMU: `Some` on a match, `None` when its
    /// console closed first, an error on timeout.
    fn wait_on_console(
        &mut self,
        patterns: &[&str],
        deadline: Instant,
    ) -> Result<Option<(usize, String)>> {
        let mut s = self.console.lock();
        loop {
            for (i, line) in s.lines.iter().enumerate().skip(self.cursor) {
                if let Some(p) = patterns.iter().position(|p| line.contains(p)) {
                    self.cursor = i + 1;
                    return Ok(Some((p, line.clone())));
                }
            }
            if s.closed {
                return Ok(None);
            }
            let now = Instant::now();
            if now >= deadline {
                drop(s);
                bail!(
                    "no console line with any of {patterns:?} after {:.1?}; console tail:\n{}",
                    self.started.elapsed(),
                    self.console_tail()
                );
            }
            s = self
                .console
                .changed
                .wait_timeout(s, deadline - now)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// The last 40 console lines, then QEMU's stderr.
    fn console_tail(&self) -> String {
        let s = self.console.lock();
        let from = s.lines.len().saturating_sub(40);
        let mut t = s.lines[from..].join("\n");
        for l in &s.stderr {
            t.push_str(&format!("\n[qemu] {l}"));
        }
        t
    }

    /// Kills QEMU with SIGKILL: to the guest, a power cut (writes QEMU
    /// already passed to the host survive; the guest's unflushed caches do
    /// not).
    pub fn kill(&mut self) -> Result<()> {
        if self.exit.is_none() {
            // Fails only if it already exited; wait() tells.
            let _ = self.child.kill();
            self.exit = Some(self.child.wait()?);
        }
        self.join_readers();
        Ok(())
    }

    /// Waits for QEMU to exit by itself (guest poweroff, or a panic with
    /// `panic=-1 -no-reboot`), at most `timeout` (capped by the spec's
    /// overall one). Does not kill it on timeout; drop does.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = (Instant::now() + timeout).min(self.deadline);
        loop {
            if let Some(st) = self.exit {
                return Ok(st);
            }
            if let Some(st) = self.child.try_wait()? {
                self.exit = Some(st);
                self.join_readers();
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "QEMU still running after {:.1?}; console tail:\n{}",
                    self.started.elapsed(),
                    self.tail(20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tail(&self, n: usize) -> String {
        let s = self.console.lock();
        s.lines[s.lines.len().saturating_sub(n)..].join("\n")
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Starts QEMU for `spec`, its console going to `log` (truncated).
fn spawn_qemu(
    spec: &VmSpec,
    log: &Path,
    started: Instant,
) -> Result<(Child, Arc<Console>, Vec<JoinHandle<()>>)> {
    let qemu = crate::find_tool("qemu-system-x86_64")
        .context("qemu-system-x86_64 (package qemu-system-x86)")?;
    let log_file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let log_file = Arc::new(Mutex::new(log_file));
    let mut child = Command::new(qemu)
        .args(spec.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let console = Arc::new(Console::default());
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no QEMU stdout"))?;
    let stderr = child
        .stderr
        .take()
        .ok_or_else(|| anyhow!("no QEMU stderr"))?;
    let readers = vec![
        spawn_stdout_reader(stdout, console.clone(), log_file.clone(), started),
        spawn_stderr_reader(stderr, console.clone(), log_file),
    ];
    Ok((child, console, readers))
}

fn spawn_stdout_reader(
    mut out: ChildStdout,
    console: Arc<Console>,
    log: Arc<Mutex<File>>,
    started: Instant,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Ok(mut f) = log.lock() {
                let _ = f.write_all(&buf[..n]);
            }
            let mut s = console.lock();
            for &b in &buf[..n] {
                if b == b'\n' {
                    let mut line = std::mem::take(&mut s.partial);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    s.lines.push(String::from_utf8_lossy(&line).into_owned());
                    s.times.push(started.elapsed());
                } else {
                    s.partial.push(b);
                }
            }
            drop(s);
            console.changed.notify_all();
        }
        let mut s = console.lock();
        if !s.partial.is_empty() {
            let line = std::mem::take(&mut s.partial);
            s.lines.push(String::from_utf8_lossy(&line).into_owned());
            s.times.push(started.elapsed());
        }
        s.closed = true;
        drop(s);
        console.changed.notify_all();
    })
}

fn spawn_stderr_reader(
    err: ChildStderr,
    console: Arc<Console>,
    log: Arc<Mutex<File>>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if let Ok(mut f) = log.lock() {
                let _ = writeln!(f, "[qemu] {line}");
            }
            console.lock().stderr.push(line);
            console.changed.notify_all();
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A QEMU that dies before init is booted once more, then the error
    /// carries its exit status and stderr.
    #[test]
    fn qemu_dying_before_init_is_restarted_once_then_reported() {
        if crate::find_tool("qemu-system-x86_64").is_err() {
            eprintln!("SKIPPED: no qemu-system-x86_64");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let not_a_kernel = dir.path().join("bzImage");
        std::fs::write(&not_a_kernel, b"not a kernel").unwrap();
        let mut spec = VmSpec::new(&not_a_kernel, &not_a_kernel);
        spec.network = false;
        spec.timeout = Duration::from_secs(30);
        let mut vm = Vm::boot(spec).unwrap();
        let err = vm
            .wait_for("never printed", Duration::from_secs(30))
            .unwrap_err()
            .to_string();
        assert!(vm.restarted(), "{err}");
        assert!(err.contains("QEMU exited (exit status: 1)"), "{err}");
        assert!(err.contains("[qemu]"), "QEMU's stderr is shown: {err}");
    }
}
