//! The benchmark's table: medians, ratios against the targets, each
//! phase's share.

use std::fmt::Write;

use super::{Kind, Report, Sample};

/// The median of `v` (the mean of the two middle values for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn of(report: &Report, kind: Kind) -> impl Iterator<Item = &Sample> {
    report.samples.iter().filter(move |s| s.kind == kind)
}

fn med(report: &Report, kind: Kind, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    median(of(report, kind).filter_map(f).collect())
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.0} ms"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// The medians a reader (and the README) needs, computed once.
#[derive(Debug, Clone, Copy)]
pub struct Figures {
    pub plain_serving: Option<f64>,
    pub unlock_serving: Option<f64>,
    pub first_agent: Option<f64>,
    pub unlock: Option<f64>,
    pub examine: Option<f64>,
    pub argon2id: Option<f64>,
    pub pbkdf2: Option<f64>,
}

impl Figures {
    pub fn of(r: &Report) -> Figures {
        Figures {
            plain_serving: med(r, Kind::Plain, |s| Some(s.to_serving_ms)),
            unlock_serving: med(r, Kind::Unlock, |s| Some(s.to_serving_ms)),
            first_agent: med(r, Kind::FirstBoot, |s| Some(s.agent_ms())),
            unlock: med(r, Kind::Unlock, Sample::unlock_ms),
            examine: med(r, Kind::Unlock, Sample::examine_ms),
            argon2id: median(r.cryptsetup.iter().map(|c| c.argon2id_ms as f64).collect()),
            pbkdf2: median(
                r.cryptsetup
                    .iter()
                    .map(|c| c.pbkdf2_1000_ms as f64)
                    .collect(),
            ),
        }
    }
}

/// The whole table as text.
pub fn render(r: &Report) -> String {
    let f = Figures::of(r);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "cvm-init boot benchmark: medians of {} repetition(s)\nmachine: {}\nguest kernel: {}\n",
        r.reps, r.machine, r.kernel
    );
    let _ = writeln!(
        t,
        "{:<46} {:>22} {:>22}",
        "boot", "QEMU start -> serving", "init start -> handoff"
    );
    for kind in [Kind::Plain, Kind::Unlock, Kind::FirstBoot] {
        let _ = writeln!(
            t,
            "{:<46} {:>22} {:>22}",
            if kind == Kind::FirstBoot {
                format!("{} ({} GiB)", kind.label(), r.blank_gib)
            } else {
                kind.label().to_owned()
            },
            ms(med(r, kind, |s| Some(s.to_serving_ms))),
            ms(med(r, kind, |s| Some(s.agent_ms())))
        );
    }
    let _ = writeln!(t, "\ntargets:");
    if let (Some(b), Some(a)) = (f.unlock_serving, f.plain_serving) {
        let ratio = b / a;
        let _ = writeln!(
            t,
            "  boot to serving, (b)/(a): {ratio:.2} (target <= 1.25: {})",
            verdict(ratio <= 1.25)
        );
    }
    if let (Some(u), Some(a)) = (f.unlock, f.argon2id) {
        let _ = writeln!(
            t,
            "  unlock, key in hand -> mapping active: {u:.0} ms; cryptsetup open, argon2id default keyslot: {a:.0} ms; 1/{:.0} (target <= 1/50: {}); pbkdf2-1000 keyslot: {}",
            a / u.max(0.001),
            verdict(u * 50.0 <= a),
            ms(f.pbkdf2)
        );
        if let Some(e) = f.examine {
            let _ = writeln!(
                t,
                "    (before the key is in: the volume's examination, locate -> probe -> header copy -> shape check, {e:.0} ms alongside the broker session; with it, {:.0} ms, 1/{:.0})",
                e + u,
                a / (e + u).max(0.001)
            );
        }
    }
    if let Some(first) = f.first_agent {
        let _ = writeln!(
            t,
            "  first boot of the blank {} GiB disk, agent start -> handoff: {first:.0} ms (target <= 3000 ms: {})",
            r.blank_gib,
            verdict(first <= 3000.0)
        );
    }
    let s = &r.sizes;
    let shipped = match s.release_binary_bytes {
        Some(b) => format!(
            "{:.2} MiB as released (target <= 6 MiB: {})",
            mib(b),
            verdict(b <= 6 << 20)
        ),
        None => "not measured in this run (--no-release skips the LTO release build)".to_owned(),
    };
    let _ = writeln!(
        t,
        "  stripped binary: {shipped}; the VM tests' unoptimised-link build: {:.2} MiB; initramfs delta (with the VM build), zstd -19: {:.2} MiB (target <= 12 MiB: {}); largest: {}",
        mib(s.binary_bytes),
        mib(s.initramfs_delta_zstd_bytes),
        verdict(s.initramfs_delta_zstd_bytes <= 12 << 20),
        s.largest
            .iter()
            .map(|(name, b)| format!("{name} {:.2} MiB", mib(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for kind in [Kind::Unlock, Kind::FirstBoot] {
        let total = med(r, kind, |s| Some(s.agent_ms()));
        let _ = writeln!(
            t,
            "\nphases of {} (median ms, share of the agent's time):",
            kind.label()
        );
        for (name, depth, v) in phase_medians(r, kind) {
            // One line per module only for the slow ones.
            if name.starts_with("module ") && v < 20.0 {
                continue;
            }
            let share = total.map_or(String::new(), |tot| format!("{:>5.1} %", 100.0 * v / tot));
            let _ = writeln!(
                t,
                "  {:<44} {v:>8.1} {share}",
                format!("{}{name}", "  ".repeat(depth as usize))
            );
        }
    }
    t
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

/// A boot timeline (`boot-timing.json`) as text: one bar per top-level
/// phase, on a 40-column scale of the agent's whole time.
pub fn bars(timeline: &serde_json::Value, indent: &str) -> String {
    let start = timeline["agent_start_ms"].as_f64().unwrap_or(0.0);
    let total = (timeline["end_ms"].as_f64().unwrap_or(start) - start).max(1.0);
    let mut out = String::new();
    for p in timeline["phases"].as_array().into_iter().flatten() {
        if p["depth"].as_u64() != Some(0) {
            continue;
        }
        let name = p["name"].as_str().unwrap_or("?");
        let ms = p["ms"].as_f64().unwrap_or(0.0);
        let offset = ((p["start_ms"].as_f64().unwrap_or(start) - start) / total * 40.0) as usize;
        let width = ((ms / total * 40.0).round() as usize).max(1);
        let _ = writeln!(
            out,
            "{indent}{name:<16} {}{}{} {ms:>6.0} ms",
            " ".repeat(offset.min(40)),
            "#".repeat(width.min(40)),
            " ".repeat(40usize.saturating_sub(offset + width)),
        );
    }
    out
}

/// Each phase's median over the boots of `kind`, in the first boot's order.
pub fn phase_medians(r: &Report, kind: Kind) -> Vec<(String, u32, f64)> {
    let Some(first) = of(r, kind).next() else {
        return Vec::new();
    };
    first
        .phases
        .iter()
        .map(|p| {
            let v = median(
                of(r, kind)
                    .flat_map(|s| s.phases.iter())
                    .filter(|q| q.name == p.name && q.depth == p.depth)
                    .map(|q| q.ms)
                    .collect(),
            )
            .unwrap_or(0.0);
            (p.name.clone(), p.depth, v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
