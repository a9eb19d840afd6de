//! The watched file trees, widened from the active content at start.
//!
//! A file rule whose path patterns all lie outside the watched trees can never fire, and one
//! whose patterns lie partly outside is blind there (see [`ringfence_detect::coverage`]). With
//! `[fanotify] content_paths` the agent adds the directories such patterns name, before its sources open, up to `[fanotify] max_paths` trees in
//! all; each addition is logged, and what did not fit is returned so the caller can raise a
//! health finding. The rules read are the built-in pack's and those of the bundle active in the
//! content store (verified against the trusted root, as the content manager loads it); content
//! activated later widens the trees at the next start.

use std::path::PathBuf;

use ringfence_content::{ContentStore, Limits, Outcome, SeenVersions, UnixTime, VerifyOptions};
use ringfence_detect::{Options, RuleFile, compile, coverage};
use ringfence_event::Mode;

use crate::config::FanotifySection;
use crate::content::config::ContentSection;
use crate::content::engine::ContentEngine;
use crate::content::manager::current_root;

/// What widening did: `(directory, rule id)` pairs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Widening {
    pub added: Vec<(String, String)>,
    /// Wanted but past `max_paths`.
    pub left_out: Vec<(String, String)>,
}

impl Widening {
    /// The health message for trees left out, if any.
    pub fn left_out_message(&self, max_paths: usize) -> Option<String> {
        if self.left_out.is_empty() {
            return None;
        }
        let shown: Vec<String> = self
            .left_out
            .iter()
            .take(8)
            .map(|(d, r)| format!("{d} (rule {r})"))
            .collect();
        Some(format!(
            "{} file tree(s) the active rules need are not watched: [fanotify] max_paths = \
             {max_paths} is reached; those rules are blind there: {}",
            self.left_out.len(),
            shown.join(", ")
        ))
    }
}

/// The watched trees as the coverage check reads them: as configured and, where that differs,
/// as the kernel resolves them (`/lib` → `/usr/lib`).
fn trees_of(section: &FanotifySection) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in section.all_paths() {
        let configured = p.display().to_string();
        let resolved = p
            .canonicalize()
            .map_or_else(|_| configured.clone(), |c| c.display().to_string());
        for t in [configured, resolved] {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// Add to `section.paths` the directories `rule_files` need, within `section.max_paths`.
/// Nothing is added when `content_paths` is off.
pub fn widen(section: &mut FanotifySection, rule_files: &[(String, String)]) -> Widening {
    let mut out = Widening::default();
    if !section.content_paths || rule_files.is_empty() {
        return out;
    }
    let files: Vec<RuleFile<'_>> = rule_files
        .iter()
        .map(|(p, t)| RuleFile { path: p, text: t })
        .collect();
    // File rules compile alike in both modes but for exec-open, which only driverless has.
    let compiled = compile(&files, &Options::new(Mode::Driverless));
    let trees = trees_of(section);
    for (dir, rule) in coverage::wanted_trees(&compiled.engine, &trees) {
        let count = section.paths.len() + section.write_only_paths.len();
        if count >= section.max_paths {
            out.left_out.push((dir, rule));
            continue;
        }
        tracing::info!(
            path = %dir,
            rule = %rule,
            "watching a file tree the active content needs ([fanotify] content_paths)"
        );
        section.paths.push(PathBuf::from(&dir));
        out.added.push((dir, rule));
    }
    if let Some(m) = out.left_out_message(section.max_paths) {
        tracing::warn!("{m}");
    }
    out
}

/// The rule files of the bundle active in the content store, verified against the trusted
/// root; empty without a content directory, an active bundle, or when it does not verify (the
/// content manager then reports why).
pub fn active_rule_files(
    content: &ContentSection,
    engine: &ContentEngine,
) -> Vec<(String, String)> {
    let Some(state_dir) = content.state_dir() else {
        return Vec::new();
    };
    let read = || -> Result<Vec<(String, String)>, String> {
        let store = ContentStore::open(&state_dir).map_err(|e| e.to_string())?;
        let Some(version) = store.state().map_err(|e| e.to_string())?.active else {
            return Ok(Vec::new());
        };
        let limits = Limits::default();
        let bytes = store
            .read_bundle(version, limits.max_total_bytes)
            .map_err(|e| e.to_string())?;
        let root = current_root(content).map_err(|e| e.to_string())?;
        let mut opts = VerifyOptions::new(UnixTime::now());
        opts.limits = limits;
        opts.enforce_expiry = false;
        let verified = ringfence_content::verify_signed_bundle(
            &bytes,
            &root,
            SeenVersions::default(),
            &opts,
            &*engine.validator,
        )
        .map_err(|e| e.to_string())?;
        let Outcome::New { bundle, .. } = verified.outcome else {
            return Ok(Vec::new());
        };
        Ok(bundle
            .rules()
            .filter_map(|(p, b)| Some((p.to_owned(), String::from_utf8(b.to_vec()).ok()?)))
            .collect())
    };
    read().unwrap_or_else(|e| {
        tracing::debug!(error = %e, "active content not read for its file trees");
        Vec::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web_rule() -> Vec<(String, String)> {
        vec![(
            "web.yml".to_owned(),
            "title: webshell\nid: web-1\nlogsource:\n  product: linux\n  category: file_event\n\
             detection:\n  sel:\n    TargetFilename|startswith: '/var/lib/ringfence-test-web/'\n  \
             condition: sel\nlevel: high\n"
                .to_owned(),
        )]
    }

    #[test]
    fn a_rule_outside_the_trees_widens_them_within_the_bound() {
        let mut s = FanotifySection {
            paths: vec!["/etc".into()],
            write_only_paths: Vec::new(),
            ..FanotifySection::default()
        };
        let w = widen(&mut s, &web_rule());
        assert_eq!(
            w.added,
            [("/var/lib/ringfence-test-web".to_owned(), "web-1".to_owned())]
        );
        assert!(
            s.paths
                .contains(&PathBuf::from("/var/lib/ringfence-test-web"))
        );
        // Already watched now: nothing more.
        assert_eq!(widen(&mut s, &web_rule()), Widening::default());

        let mut full = FanotifySection {
            paths: vec!["/etc".into()],
            write_only_paths: Vec::new(),
            max_paths: 1,
            ..FanotifySection::default()
        };
        let w = widen(&mut full, &web_rule());
        assert!(w.added.is_empty());
        assert_eq!(w.left_out.len(), 1);
        assert_eq!(full.paths, [PathBuf::from("/etc")]);
        assert!(
            w.left_out_message(1)
                .is_some_and(|m| m.contains("/var/lib/ringfence-test-web (rule web-1)"))
        );

        let mut off = FanotifySection {
            content_paths: false,
            ..FanotifySection::default()
        };
        assert_eq!(widen(&mut off, &web_rule()), Widening::default());
    }

    #[test]
    fn the_default_trees_cover_the_built_in_pack() {
        let files: Vec<(String, String)> = crate::content::sigma::builtin_files()
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect();
        let mut s = FanotifySection::default();
        let w = widen(&mut s, &files);
        assert!(w.added.is_empty(), "{w:?}");
    }
}
