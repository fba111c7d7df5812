//! The timelines as an SVG: one bar per boot on the guest's clock (ms
//! since the kernel started), one colour per phase.

use std::fmt::Write;

use super::{Report, Sample};

const WIDTH: f64 = 960.0;
const LABEL: f64 = 230.0;
const BAR: f64 = 18.0;
const GAP: f64 = 8.0;

/// Colours for the agent's top-level phases, by name prefix.
const COLOURS: &[(&str, &str)] = &[
    ("kernel", "#b0b0b0"),
    ("plain init", "#7f7f7f"),
    ("modules", "#e15759"),
    ("root", "#f28e2b"),
    ("network", "#edc948"),
    ("cmdline check", "#bab0ac"),
    ("broker", "#4e79a7"),
    ("examine", "#8cd17d"),
    ("volume", "#59a14f"),
    ("secrets", "#b07aa1"),
    ("other", "#dddddd"),
    ("workload", "#76b7b2"),
];

fn colour(name: &str) -> &'static str {
    COLOURS
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .map_or("#9c755f", |(_, c)| c)
}

/// The bar's segments: (name, start ms, length ms).
fn segments(s: &Sample) -> Vec<(String, f64, f64)> {
    let mut out = vec![("kernel".to_owned(), 0.0, s.init_start_ms)];
    if s.phases.is_empty() {
        out.push(("plain init".to_owned(), s.init_start_ms, s.agent_ms()));
    } else {
        let mut at = s.init_start_ms;
        // The examination runs alongside the broker session: drawn as a
        // strip under the bar (`overlays`), not in the sequence.
        for p in s
            .phases
            .iter()
            .filter(|p| p.depth == 0 && !concurrent(&p.name))
        {
            if p.start_ms > at + 0.5 {
                out.push(("other".to_owned(), at, p.start_ms - at));
            }
            out.push((p.name.clone(), p.start_ms, p.ms));
            at = p.start_ms + p.ms;
        }
        if s.handoff_ms > at + 0.5 {
            out.push(("other".to_owned(), at, s.handoff_ms - at));
        }
    }
    if let Some(serving) = s.serving_ms {
        out.push(("workload".to_owned(), s.handoff_ms, serving - s.handoff_ms));
    }
    out
}

/// Top-level phases that run next to another one.
fn concurrent(name: &str) -> bool {
    name == "examine"
}

/// The concurrent phases: (name, start ms, length ms).
fn overlays(s: &Sample) -> Vec<(String, f64, f64)> {
    s.phases
        .iter()
        .filter(|p| p.depth == 0 && concurrent(&p.name))
        .map(|p| (p.name.clone(), p.start_ms, p.ms))
        .collect()
}

/// The picture.
pub fn render(r: &Report) -> String {
    let end = r
        .samples
        .iter()
        .map(|s| s.serving_ms.unwrap_or(s.handoff_ms))
        .fold(1.0, f64::max);
    let scale = (WIDTH - LABEL - 20.0) / end;
    let legend_y = 40.0 + r.samples.len() as f64 * (BAR + GAP) + 30.0;
    let height = legend_y + 50.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="18" font-size="14">cvm-init boot timelines (guest clock, QEMU TCG): {}</text>"#,
        escape(&r.machine)
    );
    // Ticks every second.
    let mut tick = 0.0;
    while tick <= end {
        let x = LABEL + tick * scale;
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="28" x2="{x:.1}" y2="{:.1}" stroke="#eeeeee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#666">{:.0} s</text>"##,
            legend_y - 20.0,
            legend_y - 6.0,
            tick / 1000.0
        );
        tick += 1000.0;
    }
    for (i, s) in r.samples.iter().enumerate() {
        let y = 36.0 + i as f64 * (BAR + GAP);
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{:.1}">{} #{}</text>"#,
            y + BAR * 0.75,
            escape(s.kind.label()),
            s.rep + 1
        );
        for (name, start, ms) in segments(s) {
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{BAR}" fill="{}"><title>{} {ms:.0} ms</title></rect>"#,
                LABEL + start * scale,
                (ms * scale).max(0.5),
                colour(&name),
                escape(&name)
            );
        }
        for (name, start, ms) in overlays(s) {
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} {ms:.0} ms (alongside)</title></rect>"#,
                LABEL + start * scale,
                y + BAR * 0.7,
                (ms * scale).max(0.5),
                BAR * 0.3,
                colour(&name),
                escape(&name)
            );
        }
    }
    let mut x = 10.0;
    for (name, c) in COLOURS {
        let _ = writeln!(
            svg,
            r#"<rect x="{x:.1}" y="{legend_y:.1}" width="12" height="12" fill="{c}"/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            x + 16.0,
            legend_y + 10.0
        );
        x += 16.0 + 7.5 * name.len() as f64 + 14.0;
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
