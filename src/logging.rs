//! A small logger for a serial console: one line per event, level first.
//! Lines go to stderr; when running as PID 1 in the initramfs they go to
//! `/dev/kmsg` instead, so the kernel prints them on the console (with
//! timestamps) and the journal finds them after `switch_root`.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Set for an image marked `failure.debug_image`: every line then says so.
static DEBUG_IMAGE: AtomicBool = AtomicBool::new(false);

struct Logger {
    kmsg: Option<Mutex<std::fs::File>>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let debug = if DEBUG_IMAGE.load(Ordering::Relaxed) {
            "[DEBUG IMAGE, NOT SECURE] "
        } else {
            ""
        };
        let line = format!("cvm-init: {}: {debug}{}", record.level(), record.args());
        let Some(kmsg) = &self.kmsg else {
            let _ = writeln!(std::io::stderr(), "{line}");
            return;
        };
        // kmsg priorities: 3 err, 4 warning, 6 info, 7 debug.
        let prio = match record.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        // One write per record: /dev/kmsg makes a record of every write,
        // so `writeln!` (which writes piece by piece) would split the line.
        let record = format!("<{prio}>{line}\n");
        if let Ok(mut f) = kmsg.lock() {
            let _ = f.write_all(record.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. With `kmsg`, lines go to `/dev/kmsg` (falling
/// back to stderr if it cannot be opened), and the kernel's rate limit on
/// user-space kmsg writes is lifted so no line of a failing boot is lost.
pub fn init(level: log::LevelFilter, kmsg: bool) {
    if kmsg {
        let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
    }
    let kmsg = kmsg
        .then(|| {
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/kmsg")
                .ok()
        })
        .flatten()
        .map(Mutex::new);
    if log::set_boxed_logger(Box::new(Logger { kmsg })).is_ok() {
        log::set_max_level(level);
    }
}

/// Changes the level after the config (and the command line) are read.
pub fn set_level(level: log::LevelFilter) {
    log::set_max_level(level);
}

/// Marks every following line as coming from a debug image (one whose
/// config has `failure.debug_image = true`): such an image may run on an
/// unverified root or with a command line that opens a shell.
pub fn mark_debug_image() {
    DEBUG_IMAGE.store(true, Ordering::Relaxed);
}

/// An error and its causes on one line, each cause appended only when the
/// text so far does not already say it: most of our messages embed their
/// source (`"key broker: {0}"`), and `{:#}` would print it twice.
pub fn error_line(e: &dyn std::error::Error) -> String {
    let mut line = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

#[cfg(test)]
mod error_line_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("inner detail")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("stage: {0}")]
        Embeds(#[from] Inner),
        #[error("stage failed")]
        Hides(#[source] Inner),
    }

    #[test]
    fn each_cause_once() {
        assert_eq!(
            super::error_line(&Outer::Embeds(Inner)),
            "stage: inner detail"
        );
        assert_eq!(
            super::error_line(&Outer::Hides(Inner)),
            "stage failed: inner detail"
        );
    }
}
