//! Kernel command line overrides.
//!
//! The command line is written by the host, which we do not trust, and on
//! many platforms it is not measured. So it may change only settings that
//! cannot weaken security: today, only the log level
//! (`cvm_init.log_level=debug`). Any other `cvm_init.*` parameter is
//! ignored and reported, never applied: a host cannot repoint the broker,
//! unpin it, enable the simulated TEE, or change the failure action.

use std::path::Path;

use super::{Config, LogLevel};

/// Prefix of our parameters on the kernel command line.
pub const PREFIX: &str = "cvm_init.";

/// What the command line asked for, split into applied and refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides {
    pub log_level: Option<LogLevel>,
    /// `cvm_init.*` parameters that were not applied, with the reason.
    pub ignored: Vec<String>,
}

impl Overrides {
    /// Parses the text of `/proc/cmdline`.
    pub fn parse(cmdline: &str) -> Self {
        let mut out = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some(param) = word.strip_prefix(PREFIX) else {
                continue;
            };
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key {
                "log_level" => match parse_level(value) {
                    Some(level) => out.log_level = Some(level),
                    None => out.ignored.push(format!(
                        "{word}: unknown level (use error, warn, info, debug or trace)"
                    )),
                },
                _ => out.ignored.push(format!(
                    "{word}: not on the allow-list (only {PREFIX}log_level may come from the kernel command line; everything else is set in the measured config)"
                )),
            }
        }
        out
    }

    /// Reads `path` (normally `/proc/cmdline`); a missing file means no
    /// overrides.
    pub fn read(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .map(|s| Self::parse(&s))
            .unwrap_or_default()
    }

    /// Applies the allowed overrides to `config`.
    pub fn apply(&self, config: &mut Config) {
        if let Some(level) = self.log_level {
            config.log.level = level;
        }
    }
}

fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => return None,
    })
}
