//! The ATT&CK coverage page (`/coverage`): what the default content pack detects of the
//! Atomic Red Team attack corpus, per technique and sensor mode, with the heat map. The figures
//! are `content/linux/corpus/attack/coverage.json` and `heatmap.svg`, compiled in: the corpus
//! test of ringfence-detect checks the JSON against a replay of the recorded corpus, and
//! `ringfence eval --corpus content/linux/corpus/attack --svg` draws the picture.

use std::sync::LazyLock;

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::AppState;
use crate::dashboard::{Layout, render, session};
use crate::error::AppError;

const COVERAGE_JSON: &str = include_str!("../../../content/linux/corpus/attack/coverage.json");
const HEATMAP_SVG: &str = include_str!("../../../content/linux/corpus/attack/heatmap.svg");

#[derive(Debug, Deserialize)]
struct ModeRate {
    mode: String,
    observed: usize,
    detected: usize,
}

#[derive(Debug, Deserialize)]
struct Row {
    technique: String,
    tactic: String,
    modes: Vec<ModeRate>,
    rules: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Unobservable {
    id: String,
    why: String,
}

#[derive(Debug, Deserialize)]
struct Coverage {
    cases: usize,
    modes: Vec<ModeRate>,
    techniques: Vec<Row>,
    unobservable: Vec<Unobservable>,
}

static COVERAGE: LazyLock<Result<Coverage, String>> = LazyLock::new(|| {
    serde_json::from_str(COVERAGE_JSON)
        .map_err(|e| format!("content/linux/corpus/attack/coverage.json (compiled in): {e}"))
});

/// One mode's figure in a cell: `detected/observed` and the badge class for its share.
struct Cell {
    text: String,
    class: &'static str,
}

impl Cell {
    fn of(r: &ModeRate) -> Cell {
        let class = match (r.observed, r.detected) {
            (0, _) => "wait",
            (o, d) if d >= o => "pass",
            (_, 0) => "fail",
            _ => "halt",
        };
        Cell {
            text: format!("{}/{}", r.detected, r.observed),
            class,
        }
    }
}

struct RowView {
    tactic: String,
    technique: String,
    cells: Vec<Cell>,
    rules: String,
}

struct Total {
    mode: String,
    detected: usize,
    observed: usize,
    percent: String,
}

#[derive(Template)]
#[template(path = "coverage.html")]
struct CoveragePage {
    layout: Layout,
    cases: usize,
    modes: Vec<String>,
    totals: Vec<Total>,
    rows: Vec<RowView>,
    unobservable: Vec<(String, String)>,
    heatmap_svg: &'static str,
}

fn page(c: &Coverage, operator: &str) -> CoveragePage {
    let modes: Vec<String> = c.modes.iter().map(|m| m.mode.clone()).collect();
    CoveragePage {
        layout: Layout::new("ATT&CK coverage", "Coverage", operator),
        cases: c.cases,
        totals: c
            .modes
            .iter()
            .map(|m| Total {
                mode: m.mode.clone(),
                detected: m.detected,
                observed: m.observed,
                percent: if m.observed == 0 {
                    "-".into()
                } else {
                    format!("{:.0}%", m.detected as f64 * 100.0 / m.observed as f64)
                },
            })
            .collect(),
        rows: c
            .techniques
            .iter()
            .map(|t| RowView {
                tactic: t.tactic.clone(),
                technique: t.technique.clone(),
                // In the order of the totals, whatever order the row lists its modes in.
                cells: modes
                    .iter()
                    .map(|m| match t.modes.iter().find(|r| &r.mode == m) {
                        Some(r) => Cell::of(r),
                        None => Cell {
                            text: "-".into(),
                            class: "wait",
                        },
                    })
                    .collect(),
                rules: t.rules.join("; "),
            })
            .collect(),
        unobservable: c
            .unobservable
            .iter()
            .map(|u| (u.id.clone(), u.why.clone()))
            .collect(),
        modes,
        heatmap_svg: HEATMAP_SVG,
    }
}

pub(crate) async fn coverage_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let op = match session(&state, &headers).await {
        Ok(op) => op,
        Err(r) => return r,
    };
    match &*COVERAGE {
        Ok(c) => render(&page(c, &op)),
        Err(e) => AppError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[test]
    fn the_compiled_in_coverage_parses_and_renders_every_technique() {
        let c = COVERAGE.as_ref().unwrap();
        assert!(c.cases > 0 && !c.techniques.is_empty());
        let html = page(c, "alice").render().unwrap();
        for t in &c.techniques {
            assert!(
                html.contains(&t.technique),
                "{} not on the page",
                t.technique
            );
        }
        assert!(html.contains("<svg"), "the heat map is drawn");
        for u in &c.unobservable {
            assert!(html.contains(&u.id));
        }
    }

    #[test]
    fn cells_are_coloured_by_the_share_detected() {
        let r = |observed, detected| ModeRate {
            mode: "ebpf".into(),
            observed,
            detected,
        };
        assert_eq!(Cell::of(&r(2, 2)).class, "pass");
        assert_eq!(Cell::of(&r(2, 1)).class, "halt");
        assert_eq!(Cell::of(&r(2, 0)).class, "fail");
        assert_eq!(Cell::of(&r(0, 0)).class, "wait");
        assert_eq!(Cell::of(&r(3, 1)).text, "1/3");
    }
}
