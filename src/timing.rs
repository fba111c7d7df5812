//! The boot timeline: monotonic start and length of every phase, for
//! `/run/cvm-init/boot-timing.json`, one summary line, and the benchmark.
//!
//! Times are milliseconds of `CLOCK_MONOTONIC`, the clock the kernel's
//! console timestamps use, so the agent's phases line up with the kernel's
//! own lines. Phase names are fixed words plus volume, resource and module
//! names from the measured config: nothing secret is ever recorded.

use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

/// Where PID 1 and `cvm-init boot` leave the timeline (tmpfs).
pub const TIMING_FILE: &str = "/run/cvm-init/boot-timing.json";

/// One phase: a name, when it started and how long it took.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Milliseconds since the kernel started (`CLOCK_MONOTONIC`).
    pub start_ms: f64,
    /// `None` while the phase runs (or if it was cut short by an error
    /// that never returned).
    pub ms: Option<f64>,
    /// 0 for a top-level phase, 1 for a step inside it, and so on.
    pub depth: u32,
}

/// The file's contents.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub version: u32,
    /// When the agent started, on the same clock.
    pub agent_start_ms: f64,
    /// When the timeline was written.
    pub end_ms: f64,
    /// `true` when the boot reached its handoff (or the end of `boot`).
    pub ok: bool,
    pub phases: Vec<Phase>,
}

struct State {
    agent_start_ms: f64,
    phases: Vec<Phase>,
}

static STATE: Mutex<State> = Mutex::new(State {
    agent_start_ms: 0.0,
    phases: Vec::new(),
});

thread_local! {
    /// The nesting depth of this thread's running phases: a thread starts
    /// at the top level, so two threads each have their own phases (the
    /// boot runs the broker session next to the volume examination).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn state() -> std::sync::MutexGuard<'static, State> {
    // A panic while holding the lock leaves plain numbers behind: keep them.
    STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Milliseconds of `CLOCK_MONOTONIC` (0 if the clock cannot be read, which
/// Linux never does for this clock).
pub fn now_ms() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0.0, |t| {
        t.tv_sec() as f64 * 1000.0 + t.tv_nsec() as f64 / 1e6
    })
}

/// Marks the agent's start (the first thing `main` does).
pub fn start() {
    state().agent_start_ms = now_ms();
}

/// A running phase; it ends when dropped (also on an early `?` return).
#[must_use = "the phase ends when this guard is dropped"]
pub struct PhaseGuard {
    index: usize,
    /// Counted in the nesting depth ([`phase`]), not [`phase_at`].
    nested: bool,
    /// Ends on the thread that started it (the depth is per thread).
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Starts a phase inside whatever phase is running.
pub fn phase(name: impl Into<String>) -> PhaseGuard {
    let depth = DEPTH.with(|d| d.replace(d.get() + 1));
    push(&mut state(), name.into(), depth, true)
}

fn push(s: &mut State, name: String, depth: u32, nested: bool) -> PhaseGuard {
    s.phases.push(Phase {
        name,
        start_ms: now_ms(),
        ms: None,
        depth,
    });
    PhaseGuard {
        index: s.phases.len() - 1,
        nested,
        _not_send: std::marker::PhantomData,
    }
}

/// Starts a phase at a fixed `depth`, leaving the nesting alone: for
/// phases that run on several threads at once.
pub fn phase_at(name: impl Into<String>, depth: u32) -> PhaseGuard {
    push(&mut state(), name.into(), depth, false)
}

impl PhaseGuard {
    /// Ends the phase now and returns its length in milliseconds.
    pub fn end(self) -> f64 {
        self.finish()
    }

    fn finish(&self) -> f64 {
        if self.nested {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
        let mut s = state();
        let now = now_ms();
        match s.phases.get_mut(self.index) {
            Some(p) if p.ms.is_none() => {
                let ms = now - p.start_ms;
                p.ms = Some(ms);
                ms
            }
            Some(p) => p.ms.unwrap_or_default(),
            None => 0.0,
        }
    }
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        let s = state();
        let open = s.phases.get(self.index).is_some_and(|p| p.ms.is_none());
        drop(s);
        if open {
            self.finish();
        }
    }
}

/// Runs `f` as a phase.
pub fn timed<T>(name: impl Into<String>, f: impl FnOnce() -> T) -> T {
    let _phase = phase(name);
    f()
}

/// The timeline so far.
pub fn snapshot(ok: bool) -> Timeline {
    let s = state();
    Timeline {
        version: 1,
        agent_start_ms: s.agent_start_ms,
        end_ms: now_ms(),
        ok,
        phases: s.phases.clone(),
    }
}

/// Writes the timeline as JSON to `path` (mode 0644: it holds no secret).
pub fn write(path: &Path, ok: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec(&snapshot(ok)).map_err(std::io::Error::other)?;
    std::fs::write(path, json)
}

/// Writes [`TIMING_FILE`] and logs the summary; a failure to write is
/// logged, never fatal (the timeline is for people, not for the boot).
pub fn finish(ok: bool) {
    log::info!("timing: {}", summary(&snapshot(ok)));
    if let Err(e) = write(Path::new(TIMING_FILE), ok) {
        log::warn!("timing: cannot write {TIMING_FILE}: {e}");
    }
}

/// The top-level phases on one line: `modules 1327 ms, root 155 ms, ...`.
pub fn summary(t: &Timeline) -> String {
    let phases: Vec<String> = t
        .phases
        .iter()
        .filter(|p| p.depth == 0)
        .map(|p| match p.ms {
            Some(ms) => format!("{} {ms:.0} ms", p.name),
            None => format!("{} (unfinished)", p.name),
        })
        .collect();
    format!(
        "{}; {:.0} ms in all (boot-timing.json has every step)",
        phases.join(", "),
        t.end_ms - t.agent_start_ms
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    // One test: the timeline is process-global.
    #[test]
    fn nests_ends_on_drop_and_summarises() {
        start();
        {
            let _outer = phase("outer");
            timed("inner", || {
                std::thread::sleep(std::time::Duration::from_millis(2))
            });
            let cut = phase("cut short");
            drop(cut);
            // Another thread's phases nest on their own.
            std::thread::spawn(|| timed("elsewhere", || ()))
                .join()
                .unwrap();
        }
        let t = snapshot(true);
        let names: Vec<(&str, u32)> = t
            .phases
            .iter()
            .map(|p| (p.name.as_str(), p.depth))
            .collect();
        assert_eq!(
            names,
            [
                ("outer", 0),
                ("inner", 1),
                ("cut short", 1),
                ("elsewhere", 0)
            ]
        );
        assert!(t.phases.iter().all(|p| p.ms.is_some()));
        assert!(t.phases[1].ms.unwrap_or_default() >= 2.0);
        assert!(t.phases[0].start_ms >= t.agent_start_ms);
        let line = summary(&t);
        assert!(line.starts_with("outer "), "{line}");
        assert!(!line.contains("inner"), "{line}");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/boot-timing.json");
        write(&path, false).unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back["version"], 1);
        assert_eq!(back["ok"], false);
        assert_eq!(back["phases"][1]["name"], "inner");
    }
}
