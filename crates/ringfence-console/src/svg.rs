//! The dashboard's pictures, drawn on the server as SVG (no script, no library): the rollout's
//! rings, agents per content version, findings over time by severity, a host's health over a
//! day, and a finding's process ancestry. Every text in them goes through [`esc`].

use std::fmt::Write as _;

use crate::clock::Millis;
use crate::dashboard::{esc, utc};
use crate::finding_view::Proc;
use crate::plan::format_duration;
use crate::rollout::RolloutView;

/// Severity colours, by rank (0 unknown … 5 critical); the style sheet uses the same.
pub const SEVERITY_COLORS: [&str; 6] = [
    "#98a2b3", "#667085", "#2e6be6", "#dc8a00", "#d92d20", "#7a1010",
];

/// The picture of a rollout: fleet coverage by ring, then each ring's progress.
pub fn rollout_svg(r: &RolloutView) -> String {
    let width = 1000.0;
    let label_w = 230.0;
    let bar_w = width - label_w - 150.0;
    let row_h = 46.0;
    let height = 70.0 + row_h * r.rings.len() as f64;
    let color = |state: &str| match state {
        "passed" => "#12a150",
        "active" => "#2e6be6",
        "failed" => "#d92d20",
        "halted" => "#dc8a00",
        _ => "#c9ced6",
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"100%\" role=\"img\" aria-label=\"rollout {} progress\" font-family=\"system-ui,sans-serif\">",
        r.id
    );
    // Fleet coverage strip.
    let fleet = r.fleet.max(1) as f64;
    let _ = write!(
        s,
        "<text x=\"0\" y=\"16\" font-size=\"13\" font-weight=\"600\">Fleet coverage ({} agents)</text>\
         <rect x=\"{label_w}\" y=\"4\" width=\"{bar_w}\" height=\"18\" rx=\"4\" fill=\"#eef0f3\"/>",
        r.fleet
    );
    let mut x = label_w;
    for ring in &r.rings {
        let w = ring.members as f64 / fleet * bar_w;
        if w > 0.0 {
            let _ = write!(
                s,
                "<rect x=\"{x:.2}\" y=\"4\" width=\"{w:.2}\" height=\"18\" fill=\"{}\" stroke=\"#fff\" stroke-width=\"1\"><title>{}: {} agents ({:.1}% of the fleet)</title></rect>",
                color(&ring.state),
                esc(&ring.name),
                ring.members,
                ring.members as f64 / fleet * 100.0
            );
        }
        x += w;
    }
    let reached: i64 = r.rings.iter().map(|g| g.members).sum();
    let _ = write!(
        s,
        "<text x=\"{:.0}\" y=\"18\" font-size=\"12\" fill=\"#667085\">{:.1}% reached</text>",
        label_w + bar_w + 10.0,
        reached as f64 / fleet * 100.0
    );
    for (i, ring) in r.rings.iter().enumerate() {
        let y = 50.0 + row_h * i as f64;
        let members = ring.members.max(1) as f64;
        let new_w = ring.on_new as f64 / members * bar_w;
        let rb_w = ring.on_rollback as f64 / members * bar_w;
        let window = ring
            .window
            .as_deref()
            .map_or(String::new(), |w| format!(" · window {w}"));
        let _ = write!(
            s,
            "<g><circle cx=\"8\" cy=\"{cy:.0}\" r=\"6\" fill=\"{c}\"/>\
             <text x=\"22\" y=\"{ty:.0}\" font-size=\"13\" font-weight=\"600\">{i}. {name}</text>\
             <text x=\"22\" y=\"{sy:.0}\" font-size=\"11\" fill=\"#667085\">{sel} · bake {bake}{window}</text>\
             <rect x=\"{label_w}\" y=\"{by:.0}\" width=\"{bar_w}\" height=\"20\" rx=\"4\" fill=\"#eef0f3\"/>\
             <rect x=\"{label_w}\" y=\"{by:.0}\" width=\"{new_w:.2}\" height=\"20\" rx=\"4\" fill=\"{c}\"><title>{on_new} of {m} on {to_long}</title></rect>\
             <rect x=\"{rx:.2}\" y=\"{by:.0}\" width=\"{rb_w:.2}\" height=\"20\" fill=\"#7a5af8\"><title>{on_rb} rolled back</title></rect>\
             <text x=\"{lx:.0}\" y=\"{ty:.0}\" font-size=\"12\">{on_new}/{m} on {to}{rbtxt}</text>\
             <text x=\"{lx:.0}\" y=\"{sy:.0}\" font-size=\"11\" fill=\"#667085\">{st} · {ctl} controls</text></g>",
            cy = y + 10.0,
            c = color(&ring.state),
            ty = y + 14.0,
            sy = y + 29.0,
            by = y + 2.0,
            rx = label_w + new_w,
            lx = label_w + bar_w + 10.0,
            name = esc(&ring.name),
            sel = esc(&ring.selector),
            bake = format_duration(ring.bake_ms),
            on_new = ring.on_new,
            on_rb = ring.on_rollback,
            m = ring.members,
            // Short beside the bar (`v2`, `0.3.0`), in full in the tooltip.
            to = esc(&r
                .to_label
                .clone()
                .unwrap_or_else(|| format!("v{}", r.to_version))),
            to_long = esc(&r.describe(r.to_version)),
            rbtxt = if ring.on_rollback > 0 {
                format!(", {} rolled back", ring.on_rollback)
            } else {
                String::new()
            },
            st = esc(&ring.state),
            ctl = ring.controls,
        );
    }
    s.push_str("</svg>");
    s
}

/// Agents per content version, one bar.
pub fn versions_svg(total: i64, versions: &[(i64, i64)]) -> String {
    let total = total.max(1) as f64;
    let mut b = String::from(
        "<svg width=\"100%\" height=\"26\" viewBox=\"0 0 600 26\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"agents per content version\">",
    );
    let palette = [
        "#2e6be6", "#12a150", "#dc8a00", "#7a5af8", "#d92d20", "#0ba5ec",
    ];
    let mut x = 0.0;
    for (i, (v, n)) in versions.iter().enumerate() {
        let w = *n as f64 / total * 600.0;
        let _ = write!(
            b,
            "<rect x=\"{x:.1}\" y=\"2\" width=\"{w:.1}\" height=\"22\" fill=\"{}\"><title>v{v}: {n} agents</title></rect>\
             <text x=\"{:.1}\" y=\"17\" font-size=\"11\" fill=\"#fff\">v{v} ({n})</text>",
            palette[i % palette.len()],
            x + 4.0
        );
        x += w;
    }
    b.push_str("</svg>");
    b
}

/// Findings per bucket as bars stacked by severity (critical on top), with a legend.
/// `buckets[i][rank]` counts bucket `i` (starting at `since`, `bucket_ms` long).
pub fn timeline_svg(label: &str, since: Millis, bucket_ms: Millis, buckets: &[[i64; 6]]) -> String {
    let (w, h, left, bottom, top) = (1000.0, 180.0, 40.0, 22.0, 24.0);
    let plot_h = h - bottom - top;
    let n = buckets.len().max(1) as f64;
    let bar_w = (w - left) / n;
    let max = buckets
        .iter()
        .map(|b| b.iter().fold(0i64, |a, x| a.saturating_add(*x)))
        .max()
        .unwrap_or(0)
        .max(1);
    let mut s = format!(
        "<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"{}\" font-family=\"system-ui,sans-serif\">",
        esc(label)
    );
    // Legend.
    let mut lx = left;
    for rank in (0..6).rev() {
        let word = crate::findings::severity_word(rank as u8);
        let _ = write!(
            s,
            "<rect x=\"{lx}\" y=\"4\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"13\" font-size=\"11\">{word}</text>",
            SEVERITY_COLORS[rank],
            lx + 14.0
        );
        lx += 24.0 + 7.0 * word.len() as f64;
    }
    let _ = write!(
        s,
        "<text x=\"{:.0}\" y=\"13\" font-size=\"11\" fill=\"#667085\" text-anchor=\"end\">max {max} per {}</text>",
        w,
        format_duration(bucket_ms)
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{:.0}\" x2=\"{w}\" y2=\"{:.0}\" stroke=\"#e4e7ec\"/>",
        h - bottom,
        h - bottom
    );
    for (i, b) in buckets.iter().enumerate() {
        let x = left + bar_w * i as f64;
        let mut y = h - bottom;
        for rank in 0..6 {
            let c = b[rank];
            if c <= 0 {
                continue;
            }
            let bh = c as f64 / max as f64 * plot_h;
            y -= bh;
            let _ = write!(
                s,
                "<rect class=\"sev{rank}\" x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"{}\"><title>{} {}: {c}</title></rect>",
                x + 1.0,
                (bar_w - 2.0).max(1.0),
                SEVERITY_COLORS[rank],
                utc(since.saturating_add(bucket_ms.saturating_mul(i as i64))),
                crate::findings::severity_word(rank as u8),
            );
        }
    }
    // Time labels: first, middle, last bucket.
    let last = buckets.len().saturating_sub(1);
    for (i, x, anchor) in [
        (0, left, "start"),
        (
            buckets.len() / 2,
            left + bar_w * (buckets.len() / 2) as f64,
            "start",
        ),
        (last, w, "end"),
    ] {
        let t = utc(since.saturating_add(bucket_ms.saturating_mul(i as i64)));
        let _ = write!(
            s,
            "<text x=\"{x:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#667085\" text-anchor=\"{anchor}\">{}</text>",
            h - 6.0,
            esc(t.get(5..16).unwrap_or(&t))
        );
    }
    s.push_str("</svg>");
    s
}

/// One check-in as the health picture needs it.
#[derive(Debug, Clone, Copy)]
pub struct HealthPoint {
    pub at: Millis,
    pub cpu: f64,
    pub crashes: i64,
    pub lkg: i64,
    pub drops: i64,
}

/// A host's health over `[since, since + span)`: CPU as a line, check-ins as ticks, crashes
/// and fallbacks as red marks, drops as amber marks.
pub fn health_svg(since: Millis, span: Millis, points: &[HealthPoint]) -> String {
    let (w, h, left, top, bottom) = (1000.0, 120.0, 40.0, 10.0, 22.0);
    let plot_h = h - top - bottom;
    let span = span.max(1) as f64;
    let x_of = |t: Millis| left + ((t - since) as f64 / span).clamp(0.0, 1.0) * (w - left);
    let max_cpu = points.iter().map(|p| p.cpu).fold(1.0_f64, f64::max);
    let mut s = format!(
        "<svg class=\"health\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"health timeline\" font-family=\"system-ui,sans-serif\">\
         <line x1=\"{left}\" y1=\"{:.0}\" x2=\"{w}\" y2=\"{:.0}\" stroke=\"#e4e7ec\"/>\
         <text x=\"0\" y=\"{:.0}\" font-size=\"11\" fill=\"#667085\">{max_cpu:.0}%</text>",
        h - bottom,
        h - bottom,
        top + 8.0
    );
    let mut sorted: Vec<&HealthPoint> = points.iter().collect();
    sorted.sort_by_key(|p| p.at);
    let line: Vec<String> = sorted
        .iter()
        .map(|p| {
            format!(
                "{:.1},{:.1}",
                x_of(p.at),
                h - bottom - (p.cpu / max_cpu).clamp(0.0, 1.0) * plot_h
            )
        })
        .collect();
    if !line.is_empty() {
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"#2e6be6\" stroke-width=\"1.5\" points=\"{}\"><title>CPU</title></polyline>",
            line.join(" ")
        );
    }
    for p in &sorted {
        let x = x_of(p.at);
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{:.0}\" x2=\"{x:.1}\" y2=\"{:.0}\" stroke=\"#12a150\"/>",
            h - bottom,
            h - bottom + 4.0
        );
        if p.crashes > 0 || p.lkg > 0 {
            let _ = write!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{:.0}\" r=\"5\" fill=\"#d92d20\"><title>{}: {} crashes, {} fallbacks</title></circle>",
                top + 4.0,
                utc(p.at),
                p.crashes,
                p.lkg
            );
        } else if p.drops > 0 {
            let _ = write!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{:.0}\" r=\"3\" fill=\"#dc8a00\"><title>{}: {} events dropped</title></circle>",
                top + 4.0,
                utc(p.at),
                p.drops
            );
        }
    }
    for (frac, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let t = utc(since + (span * frac) as Millis);
        let _ = write!(
            s,
            "<text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#667085\" text-anchor=\"{anchor}\">{}</text>",
            left + (w - left) * frac,
            h - 6.0,
            esc(t.get(5..16).unwrap_or(&t))
        );
    }
    s.push_str("</svg>");
    s
}

/// The process ancestry drawn as a tree, oldest at the top, the finding's process last and
/// outlined in red. Command lines are cut to fit; the list under the picture has them whole.
pub fn tree_svg(tree: &[Proc]) -> String {
    let (row_h, indent, w) = (46.0, 22.0, 1000.0);
    let h = 10.0 + row_h * tree.len() as f64;
    let mut s = format!(
        "<svg class=\"ptree\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\" aria-label=\"process tree\" font-family=\"ui-monospace,monospace\">"
    );
    for (i, p) in tree.iter().enumerate() {
        let x = 4.0 + indent * i as f64;
        let y = 4.0 + row_h * i as f64;
        if i > 0 {
            let _ = write!(
                s,
                "<path d=\"M{:.0} {:.0} V{:.0} H{x:.0}\" fill=\"none\" stroke=\"#98a2b3\"/>",
                x - indent + 10.0,
                y - row_h + 36.0,
                y + 16.0
            );
        }
        let box_w = w - x - 4.0;
        let (stroke, fill) = if p.subject {
            ("#d92d20", "#fef3f2")
        } else {
            ("#d0d5dd", "#f9fafb")
        };
        let cmd: String = p
            .command_line
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(110)
            .collect();
        let _ = write!(
            s,
            "<g><rect x=\"{x:.0}\" y=\"{y:.0}\" width=\"{box_w:.0}\" height=\"36\" rx=\"6\" fill=\"{fill}\" stroke=\"{stroke}\"/>\
             <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"12\" font-weight=\"600\">{}{}</text>\
             <text x=\"{:.0}\" y=\"{:.0}\" font-size=\"11\" fill=\"#475467\">{}</text></g>",
            x + 8.0,
            y + 15.0,
            esc(&p.executable),
            p.pid
                .as_deref()
                .map_or(String::new(), |pid| format!("  [{}]", esc(pid))),
            x + 8.0,
            y + 30.0,
            esc(&cmd),
        );
    }
    s.push_str("</svg>");
    s
}
