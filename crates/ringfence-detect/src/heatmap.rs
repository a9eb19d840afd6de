//! The ATT&CK heat map of an attack corpus (`ringfence eval --svg`, the README's and the
//! console's picture): a column per tactic, a cell per technique coloured by the share of its
//! observed tests detected at medium or above. Pure function of the outcomes.

use crate::eval::{CaseOutcome, CaseSpec, Rate, TACTICS, TechniqueRow, by_technique, tactic_of};

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The corpus's coverage as an ATT&CK-style matrix: a column per tactic, a cell per technique,
/// coloured by the share of its observed tests detected at medium or above in the first mode
/// (eBPF when recorded), with the other mode's figure beside it.
pub fn svg(cases: &[CaseSpec], results: &[(String, Vec<CaseOutcome>)]) -> String {
    const CELL_W: usize = 150;
    const CELL_H: usize = 34;
    const TOP: usize = 64;
    let rows: Vec<(&str, Vec<TechniqueRow>)> = results
        .iter()
        .map(|(m, o)| (m.as_str(), by_technique(o)))
        .collect();
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); TACTICS.len()];
    if let Some((_, first)) = rows.first() {
        for (i, row) in first.iter().enumerate() {
            if let Some(col) = columns.get_mut(tactic_of(&row.technique)) {
                col.push(i);
            }
        }
    }
    let height = TOP + CELL_H * columns.iter().map(Vec::len).max().unwrap_or(0) + 40;
    let width = CELL_W * TACTICS.len() + 10;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let modes: Vec<&str> = results.iter().map(|(m, _)| m.as_str()).collect();
    let totals: Vec<String> = results
        .iter()
        .map(|(m, o)| {
            let r = Rate::of(o);
            format!("{} {}/{} ({:.0}%)", m, r.detected, r.observed, r.percent())
        })
        .collect();
    s.push_str(&format!(
        r#"<text x="5" y="16" font-size="13" font-weight="bold">Atomic Red Team tests detected at medium or above: {}</text>"#,
        escape(&totals.join(", "))
    ));
    s.push_str(&format!(
        r#"<text x="5" y="32">{} tests; cell colour: share detected in {} mode (red none, yellow some, green all, grey not observed); figures: detected/observed per mode ({})</text>"#,
        cases.len(),
        escape(modes.first().copied().unwrap_or("")),
        escape(&modes.join(", "))
    ));
    for (c, (tactic, _)) in TACTICS.iter().enumerate() {
        let x = 5 + c * CELL_W;
        s.push_str(&format!(
            r#"<text x="{}" y="{}" font-weight="bold">{}</text>"#,
            x + 2,
            TOP - 8,
            escape(tactic)
        ));
        for (r, &i) in columns
            .get(c)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            let y = TOP + r * CELL_H;
            let Some((_, first)) = rows.first() else {
                continue;
            };
            let Some(row) = first.get(i) else { continue };
            let colour = match (row.rate.observed, row.rate.detected) {
                (0, _) => "#cccccc",
                (o, d) if d >= o => "#4caf50",
                (_, 0) => "#e57373",
                _ => "#ffd54f",
            };
            let figures: Vec<String> = rows
                .iter()
                .filter_map(|(_, r)| r.get(i))
                .map(|r| format!("{}/{}", r.rate.detected, r.rate.observed))
                .collect();
            let rules: Vec<&str> = row.rules.iter().map(String::as_str).collect();
            s.push_str(&format!(
                r##"<g><title>{}: {}</title><rect x="{x}" y="{y}" width="{}" height="{}" rx="3" fill="{colour}" stroke="#ffffff"/><text x="{}" y="{}">{}</text><text x="{}" y="{}" font-size="10">{}</text></g>"##,
                escape(&row.technique),
                escape(&if rules.is_empty() { "no rule at medium or above".to_owned() } else { rules.join("; ") }),
                CELL_W - 4,
                CELL_H - 4,
                x + 4,
                y + 13,
                escape(&row.technique),
                x + 4,
                y + 26,
                escape(&figures.join("  "))
            ));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn techniques_fall_in_their_tactic_column_and_text_is_escaped() {
        assert_eq!(TACTICS[tactic_of("T1003.008")].0, "Credential Access");
        assert_eq!(TACTICS[tactic_of("T1059")].0, "Execution");
        assert_eq!(tactic_of("T9999"), TACTICS.len() - 1);
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
        let drawn = svg(&[], &[("ebpf".into(), Vec::new())]);
        assert!(drawn.starts_with("<svg") && drawn.ends_with("</svg>\n"));
    }
}
