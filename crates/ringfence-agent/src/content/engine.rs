//! Where the detection engine plugs in: [`default_engine`] is the one function to change.
//!
//! Until `ringfence-detect` lands, the validator is the content crate's
//! [`StructuralValidator`] and compilation yields [`InertContent`]. To connect the engine,
//! return its `ContentValidator` implementation as `validator` and a function that compiles a
//! [`Bundle`] into its `Engine` wrapped in a [`CompiledContent`] as `compile`. The CLI
//! (`content build`, `content verify`) and the agent both take their validator from here, so
//! build and load validate alike.

use ringfence_content::{Bundle, ContentValidator, SchemaId, StructuralValidator, ValidationError};

use super::compiled::{CompiledContent, InertContent};

/// Compiles a bundle into content the pipeline can run.
pub type CompileFn = fn(&Bundle) -> Result<Box<dyn CompiledContent>, Vec<ValidationError>>;

/// The validator and compiler the agent and the CLI use.
pub struct ContentEngine {
    /// Shown in logs and reports.
    pub name: &'static str,
    pub validator: Box<dyn ContentValidator + Send + Sync>,
    pub compile: CompileFn,
}

impl std::fmt::Debug for ContentEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentEngine")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The engine this build uses. **The detection engine plugs in here.**
pub fn default_engine() -> ContentEngine {
    ContentEngine {
        name: "structural (detection engine not connected)",
        validator: Box::new(StructuralValidator),
        compile: InertContent::compile,
    }
}

/// The field schema this agent validates against.
pub fn agent_schema() -> SchemaId {
    SchemaId {
        version: ringfence_event::SCHEMA_VERSION,
        fingerprint: ringfence_event::field::fingerprint(),
    }
}
