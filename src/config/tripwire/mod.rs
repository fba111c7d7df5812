//! Kernel command-line tripwire: parameters that open a shell or change what
//! runs, in the initrd or in the booted system.
//!
//! The host writes the kernel command line and on many platforms it is not
//! measured, so attestation does not vouch for it. Before fetching any key,
//! cvm-init looks for the parameters below (dracut, initramfs-tools, systemd,
//! sysvinit and the kernel itself read them) and refuses when one is there.
//!
//! This is defence in depth, not the defence: the defence is a measured
//! command line (or one bound into the launch measurement) and an image that
//! does not honour these parameters. A list can miss a parameter that a
//! future dracut or systemd adds; it cannot see parameters typed in later
//! (`rd.cmdline=ask`) or read from elsewhere (SMBIOS, fw_cfg); and it runs
//! only if cvm-init runs at all (`rdinit=` replaces it before it starts).
//!
//! Matching is deliberately wider than any one parser. The parsers disagree
//! on quoting, so every command line is split four ways, and a parameter
//! found in any of them counts:
//!
//! * like the kernel and dracut's `dracut-getarg` (see [`words`]): double
//!   quotes group, the bytes `\t \n \v \f \r`, space and 0xA0 separate;
//! * like initramfs-tools' `for x in $(cat /proc/cmdline)`: whitespace
//!   separates and quotes are ordinary characters;
//! * like systemd's `proc_cmdline_parse()` (`extract_first_word` with
//!   `EXTRACT_UNQUOTE|EXTRACT_RELAX`): single and double quotes group and
//!   are removed, once with backslash taken literally and once as an escape.
//!
//! In the name (before the first `=`) `-` and `_` are the same, as in
//! systemd's `proc_cmdline_key_streq()` and the kernel's `parameq()`. Names
//! are case-sensitive, as in all of them. `cvm_init.*` parameters are
//! [`super::cmdline`]'s business, not this module's.

use std::fmt;

mod table;

pub use table::FORBIDDEN;

/// One parameter that opens a shell or changes what runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    /// The parameter as written on the command line, without any value
    /// (for [`Match::Prefix`], the leading text, e.g. `init=`).
    pub name: &'static str,
    /// How a word on the command line is compared with `name`.
    pub kind: Match,
    /// Which program reads it, and where.
    pub read_by: &'static str,
    /// What it does.
    pub effect: &'static str,
}

/// How a command-line word is compared with [`Forbidden::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The whole word and nothing else: `single`, but not `single=1` or
    /// `single_quote=1` (the runlevel words reach init as bare arguments).
    Word,
    /// The name alone or with any value: `rd.break` and `rd.break=pre-mount`,
    /// but not `rd.breakfast`.
    Key,
    /// Any word that starts with the name, the kernel's `__setup()` rule:
    /// `init=` matches `init=/bin/sh`.
    Prefix,
    /// A boolean switch: the name alone or with a value, except a value its
    /// parser reads as false, written plainly. For `systemd.*` and
    /// `rd.systemd.*` names that is systemd's `parse_boolean()` (`0`, `no`,
    /// `n`, `false`, `f`, `off`, any case); for the others dracut's
    /// `getargbool` (`0`, `no`, `off`, exactly). So `rd.shell=0` (the
    /// hardening) passes, while `rd.shell=false` is flagged: dracut reads it
    /// as true.
    Switch,
}

/// A forbidden parameter found on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tripped {
    /// The word as the parser that honours it would see it (quotes removed).
    pub word: String,
    /// [`Forbidden::read_by`] of the matching entry.
    pub read_by: &'static str,
    /// [`Forbidden::effect`] of the matching entry.
    pub effect: &'static str,
}

impl fmt::Display for Tripped {
    /// "`rd.break` (read by ...: effect)"; control characters in the
    /// host-written word are escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("`")?;
        for c in self.word.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        write!(f, "` (read by {}: {})", self.read_by, self.effect)
    }
}

/// Separators of the kernel's `isspace()` (lib/ctype.c): `\t \n \v \f \r`,
/// space and 0xA0 (Latin-1 no-break space, which the kernel also splits on,
/// even inside a UTF-8 character).
fn is_kernel_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0xa0)
}

/// Separators of systemd's `WHITESPACE`.
fn is_systemd_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Splits `cmdline` into words with their byte offsets: `is_space` skips
/// the gaps, `read` takes one word starting at a non-space byte and
/// returns where it ends and its text as that parser sees it.
fn split(
    cmdline: &[u8],
    is_space: fn(u8) -> bool,
    read: impl Fn(&[u8], usize) -> (usize, Vec<u8>),
) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < cmdline.len() {
        if is_space(cmdline[pos]) {
            pos += 1;
            continue;
        }
        let (end, word) = read(cmdline, pos);
        out.push((pos, text(&word)));
        pos = end;
    }
    out
}

/// The kernel's `next_arg()` (kernel/params.c, copied by dracut-util):
/// words with their byte offset.
fn kernel_words(cmdline: &[u8]) -> Vec<(usize, String)> {
    split(cmdline, is_kernel_space, |cmdline, start| {
        let mut body = start;
        let mut in_quote = false;
        let mut quoted = false;
        if cmdline[body] == b'"' {
            body += 1;
            in_quote = true;
            quoted = true;
        }
        let mut end = body;
        let mut equals = None;
        while let Some(&b) = cmdline.get(end) {
            if is_kernel_space(b) && !in_quote {
                break;
            }
            if equals.is_none() && b == b'=' {
                equals = Some(end);
            }
            if b == b'"' {
                in_quote = !in_quote;
            }
            end += 1;
        }
        let word = &cmdline[body..end];
        let ends_in_quote = word.last() == Some(&b'"');
        let mut param = word.to_vec();
        if let Some(eq) = equals {
            let value_at = eq - body + 1;
            if param.get(value_at) == Some(&b'"') {
                param.remove(value_at);
                if ends_in_quote && param.len() > value_at {
                    param.pop();
                }
            } else if quoted && ends_in_quote {
                param.pop();
            }
        } else if quoted && ends_in_quote {
            param.pop();
        }
        (end, param)
    })
}

/// initramfs-tools' `$(cat /proc/cmdline)`: whitespace splits, quotes are
/// ordinary characters.
fn plain_words(cmdline: &[u8]) -> Vec<(usize, String)> {
    split(cmdline, is_kernel_space, |cmdline, start| {
        let end = cmdline[start..]
            .iter()
            .position(|&b| is_kernel_space(b))
            .map_or(cmdline.len(), |n| start + n);
        (end, cmdline[start..end].to_vec())
    })
}

/// systemd's `extract_first_word(EXTRACT_UNQUOTE|EXTRACT_RELAX)`, with
/// backslash either literal (`escapes == false`) or escaping the next byte.
fn systemd_words(cmdline: &[u8], escapes: bool) -> Vec<(usize, String)> {
    split(cmdline, is_systemd_space, |cmdline, mut pos| {
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        while let Some(&b) = cmdline.get(pos) {
            if quote.is_none() && is_systemd_space(b) {
                break;
            }
            pos += 1;
            if escapes && b == b'\\' {
                if let Some(&next) = cmdline.get(pos) {
                    word.push(next);
                    pos += 1;
                } else {
                    word.push(b);
                }
                continue;
            }
            match quote {
                Some(q) if b == q => quote = None,
                Some(_) => word.push(b),
                None if b == b'\'' || b == b'"' => quote = Some(b),
                None => word.push(b),
            }
        }
        (pos, word)
    })
}

/// Splits a command line into words the way the kernel does (double quotes
/// group, and the quotes around a word or a value are dropped), which is
/// also how dracut's `getarg` splits it.
pub fn words(cmdline: &str) -> Vec<String> {
    kernel_words(cmdline.as_bytes())
        .into_iter()
        .map(|(_, w)| w)
        .collect()
}

/// `-` and `_` are the same in parameter names.
fn normalise(name: &str) -> String {
    name.replace('-', "_")
}

fn is_false(name: &str, value: &str) -> bool {
    if name.starts_with("systemd.") || name.starts_with("rd.systemd.") {
        ["0", "no", "n", "false", "f", "off"]
            .iter()
            .any(|f| value.eq_ignore_ascii_case(f))
    } else {
        matches!(value, "0" | "no" | "off")
    }
}

fn trips(entry: &Forbidden, word: &str) -> bool {
    let (key, value) = match word.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (word, None),
    };
    let name = normalise(entry.name);
    match entry.kind {
        Match::Word => word == entry.name,
        Match::Key => normalise(key) == name,
        Match::Prefix => normalise(word).starts_with(&name),
        Match::Switch => normalise(key) == name && value.is_none_or(|v| !is_false(entry.name, v)),
    }
}

/// Every forbidden parameter on `cmdline`, in order.
pub fn scan(cmdline: &str) -> Vec<Tripped> {
    scan_bytes(cmdline.as_bytes())
}

/// [`scan`] for the raw bytes of `/proc/cmdline`, which need not be UTF-8.
pub fn scan_bytes(cmdline: &[u8]) -> Vec<Tripped> {
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    let passes = [
        kernel_words(cmdline),
        plain_words(cmdline),
        systemd_words(cmdline, false),
        systemd_words(cmdline, true),
    ];
    for (offset, word) in passes.into_iter().flatten() {
        for (index, entry) in FORBIDDEN.iter().enumerate() {
            if trips(entry, &word) {
                found.push((offset, index, word.clone()));
            }
        }
    }
    // Stable: for one parameter the kernel's reading (pushed first) is kept.
    found.sort_by_key(|&(offset, index, _)| (offset, index));
    found.dedup_by_key(|&mut (offset, index, _)| (offset, index));
    found
        .into_iter()
        .filter_map(|(_, index, word)| {
            FORBIDDEN.get(index).map(|entry| Tripped {
                word,
                read_by: entry.read_by,
                effect: entry.effect,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
