//! What the content manager needs from compiled content: the list of rules and a way to run
//! one rule on one event. Probation measures every rule on its own through this seam, so a
//! slow or memory-hungry rule can be disabled without disabling the content.

use ringfence_content::{Bundle, ValidationError};
use ringfence_event::Event;

/// One rule of a compiled content set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// Stable id (the Sigma `id`, or the bundle path while nothing better is known).
    pub id: String,
    /// The bundle file it came from.
    pub file: String,
}

/// Compiled, immutable content. Shared between the pipeline and the manager threads.
///
/// Implementations must not panic and must not do I/O; [`CompiledContent::evaluate_rule`]
/// runs on the pipeline thread for every event.
pub trait CompiledContent: Send + Sync {
    fn rules(&self) -> &[RuleInfo];
    /// Run rule `rule` (an index into [`CompiledContent::rules`]) on `event`; call `emit`
    /// once per finding. An index out of range does nothing.
    fn evaluate_rule(&self, rule: usize, event: &Event, emit: &mut dyn FnMut(serde_json::Value));
    /// Run every rule not `disabled` (indexed like [`CompiledContent::rules`]) on `event`.
    /// Engines with an index over their rules override this; the default runs them one by one.
    fn evaluate_all(
        &self,
        event: &Event,
        disabled: &[bool],
        emit: &mut dyn FnMut(serde_json::Value),
    ) {
        for rule in 0..self.rules().len() {
            if !disabled.get(rule).copied().unwrap_or(false) {
                self.evaluate_rule(rule, event, emit);
            }
        }
    }
    /// Indicators in the content's IOC sets (0 for content without any).
    fn indicators(&self) -> usize {
        0
    }
    /// Bytes of state the rule holds now (correlation windows, caches); 0 if stateless.
    fn rule_memory(&self, _rule: usize) -> usize {
        0
    }
    /// The content's YARA rules, for the scanner thread ([`crate::scan`]); `None` when the
    /// content has none.
    fn yara(&self) -> Option<std::sync::Arc<ringfence_content::yara::YaraRules>> {
        None
    }
    /// Hashes of executables the content asks the exec guard to refuse (IOC sets with the
    /// `# ringfence: deny-exec` directive).
    fn deny_exec_sha256(&self) -> std::collections::HashSet<[u8; 32]> {
        std::collections::HashSet::new()
    }
    /// The rules that can never fire because the sensor has no hook for any of their event
    /// kinds (`unhooked`), one line each naming the rule, its kinds and the remedy (see
    /// `ringfence_detect::hooked`); empty for engines that cannot tell.
    fn unhooked_rules(&self, _unhooked: &[ringfence_detect::hooked::Unhooked]) -> Vec<String> {
        Vec::new()
    }
}

/// Compiled content shared between threads, printable in option structs.
#[derive(Clone)]
pub struct SharedContent(pub std::sync::Arc<dyn CompiledContent>);

impl std::fmt::Debug for SharedContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedContent({} rules)", self.0.rules().len())
    }
}

/// Runs fixed content (the built-in pack when no content manager runs) as a detector.
pub struct StaticDetector(pub std::sync::Arc<dyn CompiledContent>);

impl crate::Detector for StaticDetector {
    fn name(&self) -> &str {
        "builtin-content"
    }

    fn on_event(&mut self, event: &Event, emit: &mut dyn FnMut(serde_json::Value)) {
        self.0.evaluate_all(event, &[], emit);
    }
}

/// Inert content for tests of the manager: one inert rule per rule file, so the manager,
/// probation and the swap are exercised end to end without matching anything.
#[derive(Debug, Clone)]
pub struct InertContent {
    rules: Vec<RuleInfo>,
}

impl InertContent {
    pub fn compile(
        bundle: &Bundle,
        _mode: ringfence_event::Mode,
    ) -> Result<Box<dyn CompiledContent>, Vec<ValidationError>> {
        let rules = bundle
            .rules()
            .map(|(path, _)| RuleInfo {
                id: path.to_owned(),
                file: path.to_owned(),
            })
            .collect();
        Ok(Box::new(InertContent { rules }))
    }
}

impl CompiledContent for InertContent {
    fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    fn evaluate_rule(
        &self,
        _rule: usize,
        _event: &Event,
        _emit: &mut dyn FnMut(serde_json::Value),
    ) {
    }
}
