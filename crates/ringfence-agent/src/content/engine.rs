//! Where the detection engine plugs in: [`engine_for`] gives the validator and compiler the
//! agent and the CLI use: `ringfence-detect` through [`super::sigma`]. The CLI
//! (`content build`, `content verify`) and the agent both take their validator from here, so
//! build and load validate alike. Tests of the manager swap in [`InertContent`]-style
//! compilers and the content crate's `StructuralValidator`.

use ringfence_content::{Bundle, ContentValidator, SchemaId, ValidationError};
use ringfence_event::Mode;

use super::compiled::CompiledContent;
use super::sigma::{SigmaValidator, compile_bundle};

/// Compiles a bundle for a sensor mode into content the pipeline can run.
pub type CompileFn = fn(&Bundle, Mode) -> Result<Box<dyn CompiledContent>, Vec<ValidationError>>;

/// The validator and compiler the agent and the CLI use.
pub struct ContentEngine {
    /// Shown in logs and reports.
    pub name: &'static str,
    pub validator: Box<dyn ContentValidator + Send + Sync>,
    pub compile: CompileFn,
    /// The mode content is compiled for (the validator checks every mode).
    pub mode: Mode,
}

impl std::fmt::Debug for ContentEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentEngine")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The engine for an agent in `mode`.
pub fn engine_for(mode: Mode) -> ContentEngine {
    ContentEngine {
        name: "sigma (ringfence-detect)",
        validator: Box::new(SigmaValidator),
        compile: compile_bundle,
        mode,
    }
}

/// The engine the CLI uses (validation covers both modes; compiles for eBPF).
pub fn default_engine() -> ContentEngine {
    engine_for(Mode::Ebpf)
}

/// The field schema this agent validates against.
pub fn agent_schema() -> SchemaId {
    SchemaId {
        version: ringfence_event::SCHEMA_VERSION,
        fingerprint: ringfence_event::field::fingerprint(),
    }
}
