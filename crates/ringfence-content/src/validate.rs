//! The seam to the detection compiler. Building and loading a bundle both call a
//! [`ContentValidator`] on every bundle; `ringfence-detect` implements it (compile every rule
//! against the field schema, run every content test) without this crate depending on it.

use std::fmt;

use crate::bundle::Bundle;

/// Compiles and tests a bundle's content. Must be a pure function of the bundle (and the
/// implementor's own field schema), must not panic, and must return **all** errors at once.
pub trait ContentValidator {
    fn validate(&self, bundle: &Bundle) -> Result<ValidationReport, Vec<ValidationError>>;
}

/// What a successful validation checked, for the build and load reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationReport {
    /// Rules compiled.
    pub rules: usize,
    /// Content test events run (positive and negative).
    pub tests: usize,
    /// Indicators in the IOC sets (IOC set files for validators that do not parse them).
    pub iocs: usize,
    /// YARA rules compiled ([`crate::yara`]).
    pub yara_rules: usize,
    /// Anything a person should see that is not an error (rules not applicable in a mode...).
    pub notes: Vec<String>,
}

impl ValidationReport {
    pub fn new(rules: usize, tests: usize, notes: Vec<String>) -> Self {
        ValidationReport {
            rules,
            tests,
            iocs: 0,
            yara_rules: 0,
            notes,
        }
    }

    /// The same report with `iocs` indicators.
    pub fn with_iocs(mut self, iocs: usize) -> Self {
        self.iocs = iocs;
        self
    }

    /// The same report with `yara_rules` YARA rules and their `samples` test samples run.
    pub fn with_yara(mut self, yara_rules: usize, samples: usize) -> Self {
        self.yara_rules = yara_rules;
        self.tests = self.tests.saturating_add(samples);
        self
    }

    /// No rule, no YARA rule and no indicator: content that would detect nothing.
    pub fn detects_nothing(&self) -> bool {
        self.rules == 0 && self.iocs == 0 && self.yara_rules == 0
    }
}

/// One refusal by the compiler, naming the file, line, rule id and field where known.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationError {
    /// Bundle path of the file (`rules/process_creation/x.yml`).
    pub file: String,
    pub line: Option<u32>,
    pub rule_id: Option<String>,
    pub field: Option<String>,
    pub message: String,
}

impl ValidationError {
    pub fn new(file: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError {
            file: file.into(),
            line: None,
            rule_id: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn with_line(mut self, line: u32) -> Self {
        self.line = Some(line);
        self
    }

    pub fn with_rule_id(mut self, id: impl Into<String>) -> Self {
        self.rule_id = Some(id.into());
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(id) = &self.rule_id {
            write!(f, " rule {id}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ValidationError {}

/// A validator for structure only: every rule and test file is non-empty UTF-8. It does not
/// compile anything; it stands in until the detection engine implements [`ContentValidator`],
/// and is what tests of this crate use.
#[derive(Debug, Clone, Copy, Default)]
pub struct StructuralValidator;

impl ContentValidator for StructuralValidator {
    fn validate(&self, bundle: &Bundle) -> Result<ValidationReport, Vec<ValidationError>> {
        let mut errors = Vec::new();
        for (path, data) in bundle.rules().chain(bundle.tests()) {
            if data.is_empty() {
                errors.push(ValidationError::new(path, "file is empty"));
            } else if let Err(e) = std::str::from_utf8(data) {
                errors.push(ValidationError::new(
                    path,
                    format!("not UTF-8 at byte {}", e.valid_up_to()),
                ));
            }
        }
        if errors.is_empty() {
            Ok(ValidationReport::new(
                bundle.rules().count(),
                0,
                vec!["structural validation only: rules were not compiled".into()],
            )
            .with_iocs(bundle.iocs().count()))
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{BundleBuilder, EntryKind, Limits, SchemaId};

    #[test]
    fn structural_validator_reports_every_bad_file() {
        let mut b = BundleBuilder::new(
            1,
            SchemaId {
                version: 1,
                fingerprint: "f".into(),
            },
            Limits::default(),
        );
        b.add(EntryKind::Rule, "rules/empty.yml", vec![]).unwrap();
        b.add(EntryKind::Rule, "rules/bin.yml", vec![b'a', 0xff])
            .unwrap();
        b.add(EntryKind::Rule, "rules/ok.yml", b"title: ok".to_vec())
            .unwrap();
        let errors = StructuralValidator
            .validate(&b.build().unwrap())
            .unwrap_err();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "rules/bin.yml: not UTF-8 at byte 1",
                "rules/empty.yml: file is empty"
            ]
        );
        let e = ValidationError::new("rules/x.yml", "unknown field")
            .with_line(4)
            .with_rule_id("abc")
            .with_field("Imagee");
        assert_eq!(
            e.to_string(),
            "rules/x.yml:4 rule abc field Imagee: unknown field"
        );
    }
}
