//! The content manager: the only path by which detection content becomes active.
//!
//! A signed bundle dropped into the watched content directory goes through
//! verify ([`ringfence_content::verify_signed_bundle`], trusted root from the config or the
//! store) → compile ([`engine::default_engine`], where the detection engine plugs in) →
//! **probation** ([`probation`]: every rule over a ring buffer of recent real events, then in
//! shadow beside the active content for a configured period, with per-rule CPU and memory
//! budgets; a rule over budget is disabled and reported, never the agent) → an atomic swap
//! between two events ([`manager::ContentDetector`] holds an `Arc` that is replaced on the
//! pipeline thread, so no event is seen by neither or both) → the previous bundle kept as
//! last-known-good in the [`ringfence_content::ContentStore`].
//!
//! Before the worker loads a bundle into the live pipeline it persists "activating N"; the
//! [`supervisor`] (which never parses content) counts worker deaths while that marker is set
//! and, after K of them within a window, rolls the store back to last-known-good and marks N
//! bad. A refused bundle is logged with its cause, reported as a `sensor-health` event, and
//! leaves the agent on its previous content.

pub mod compiled;
pub mod config;
pub mod engine;
pub mod heartbeat;
pub mod link_keeper;
pub mod manager;
pub mod probation;
pub mod sd_notify;
pub mod sigma;
pub mod supervisor;
pub mod trial;

pub use compiled::{CompiledContent, RuleInfo, SharedContent, StaticDetector};
pub use config::{ContentSection, Pin};
pub use engine::{ContentEngine, default_engine, engine_for};
pub use manager::{ContentDetector, ContentManager, ManagerOptions};
pub use supervisor::{Supervisor, SupervisorOptions};

/// Metadata key of the test-only fault switch (feature `fault-injection`): a bundle whose
/// metadata maps it to `panic-on-load` makes the worker panic when it loads that bundle.
pub const FAULT_METADATA_KEY: &str = "ringfence-test-fault";
