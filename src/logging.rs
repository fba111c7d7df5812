//! A small logger for a serial console: one line per event, level first.
//! Lines go to stderr; when running as PID 1 in the initramfs they also go
//! to `/dev/kmsg` so they reach the console and the journal.

use std::io::Write;
use std::sync::Mutex;

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
        let line = format!("cvm-init: {}: {}", record.level(), record.args());
        let _ = writeln!(std::io::stderr(), "{line}");
        if let Some(kmsg) = &self.kmsg {
            // kmsg priorities: 3 err, 4 warning, 6 info, 7 debug.
            let prio = match record.level() {
                log::Level::Error => 3,
                log::Level::Warn => 4,
                log::Level::Info => 6,
                log::Level::Debug | log::Level::Trace => 7,
            };
            if let Ok(mut f) = kmsg.lock() {
                let _ = writeln!(f, "<{prio}>{line}");
            }
        }
    }

    fn flush(&self) {}
}

/// Installs the logger. `kmsg` also copies lines to `/dev/kmsg`.
pub fn init(level: log::LevelFilter, kmsg: bool) {
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
