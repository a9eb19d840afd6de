//! The detection stage's seam. The pipeline calls every [`Detector`] with each enriched event;
//! a detector reports findings as ECS JSON values, which the pipeline writes to the outputs
//! beside the events. A detector reports every match: the pipeline folds repeats into one
//! finding with a count (see [`crate::group`]), after responses have seen each of them.
//!
//! The detection engine (`ringfence-detect`) plugs in here: wrap its `Engine` in a type that
//! implements this trait and pass it to [`crate::Agent::with_detector`]. A detector must not do
//! I/O or block: it runs on the pipeline thread.

use ringfence_event::Event;

/// A stage that looks at each event and may report findings.
pub trait Detector: Send {
    fn name(&self) -> &str;
    /// Inspect `event`; call `emit` once per finding.
    fn on_event(&mut self, event: &Event, emit: &mut dyn FnMut(serde_json::Value));
}
