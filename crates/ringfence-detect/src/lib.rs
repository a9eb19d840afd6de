//! Ringfence's detection engine: Sigma rules (parsed by `rsigma-parser`) compiled against the
//! field schema of one sensor mode into a matcher, correlations with bounded state, IOC sets,
//! content tests and findings in ECS or OCSF form.
//!
//! A pure function of (content, event stream): nothing here does I/O, nothing panics on any
//! rule or event, and every piece of state is bounded.
//!
//! ```text
//! compile(files, mode) ──► Engine (rules, correlations, per-kind index + prefilters)
//! Engine::evaluate(event, &mut State) ──► Hit::Rule | Hit::Correlation ──► Finding::to_json
//! ```

pub mod access;
pub mod compile;
pub mod correlation;
pub mod coverage;
pub mod engine;
pub mod eval;
pub mod finding;
pub mod heatmap;
pub mod hooked;
pub mod ioc;
mod literal;
pub mod locate;
pub mod mapping;
pub mod overrides;
pub mod pattern;
pub mod response;
pub mod rule;
pub mod testing;

pub use compile::{Compiled, Options, Refusal, RuleFile, compile};
pub use engine::{Engine, Hit, KindSummary, State};
pub use finding::{Finding, Format};
pub use ioc::IocSet;
pub use response::ResponseKind;
pub use rule::RuleMeta;

use ringfence_event::Event;

impl Engine {
    /// The finding for `hit` on `e`.
    pub fn finding<'a>(&'a self, hit: &'a Hit, e: &'a Event) -> Option<Finding<'a>> {
        match hit {
            Hit::Rule(r) => self.rules().get(*r).map(|rule| Finding {
                meta: &rule.meta,
                event: e,
                correlation: None,
            }),
            Hit::Correlation(f) => self.correlations().get(f.correlation).map(|c| Finding {
                meta: &c.meta,
                event: e,
                correlation: Some((c.kind.as_str(), f)),
            }),
        }
    }
}
