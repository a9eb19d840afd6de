//! Path coverage: whether a file rule's path patterns can meet the watched file trees.
//!
//! File events are collected only under the watched trees (`[fanotify] paths`, in both modes).
//! A rule whose `file.path` tests all require a path outside every tree can never fire (the
//! same class of fault as a field no sensor fills): [`check`] reports it, and [`wanted_trees`]
//! names the directories that would let it fire, so the agent can widen its watch set from the
//! active content.
//!
//! The analysis is conservative: a rule is reported only when every way its condition can
//! match needs `file.path` to start with a known literal (`startswith`, an exact value, a glob
//! with a leading literal), and every such literal lies outside every tree. `contains`,
//! `endswith`, `re`, negations and rules that also run on kinds whose path is not gated by the
//! trees (module loads, memfd) are never reported.

use ringfence_event::{EventKind, Field, KindSet};

use crate::Refusal;
use crate::compile::RuleFile;
use crate::engine::Engine;
use crate::locate;
use crate::mapping::Accessor;
use crate::pattern::Pattern;
use crate::rule::{Expr, Item, Rule};

/// Kinds that carry a `file.path` without it being under a watched tree.
const UNGATED_PATH_KINDS: KindSet = KindSet::of(&[EventKind::ModuleLoad, EventKind::MemfdCreate]);

/// Past this many alternatives an intersection keeps the smaller side (still sound: a superset).
const MAX_ALTERNATIVES: usize = 4096;

/// One literal a matching path starts with (or, `exact`, is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathLiteral {
    pub text: String,
    pub exact: bool,
    pub cased: bool,
}

impl PathLiteral {
    fn folded(&self, s: &str) -> String {
        if self.cased {
            s.to_owned()
        } else {
            s.to_ascii_lowercase()
        }
    }

    /// Whether some path this literal admits lies in the tree `root` (a directory, no
    /// trailing `/` except for `/` itself).
    pub fn meets(&self, root: &str) -> bool {
        let root = root.trim_end_matches('/');
        let dir = self.folded(&format!("{root}/"));
        let text = self.folded(&self.text);
        if self.exact {
            text.starts_with(&dir) || text == self.folded(root)
        } else {
            text.starts_with(&dir) || dir.starts_with(&text)
        }
    }

    /// The directory to watch so that paths this literal admits are seen: the literal up to
    /// its last `/`. `None` for `/` itself or a relative literal: that is no tree to add.
    pub fn directory(&self) -> Option<String> {
        if !self.text.starts_with('/') {
            return None;
        }
        let cut = self.text.rfind('/')?;
        let dir = self.text[..cut].trim_end_matches('/');
        (!dir.is_empty()).then(|| dir.to_owned())
    }

    /// The tighter of two literals when one admits a subset of the other's paths.
    fn meet(&self, other: &PathLiteral) -> Option<PathLiteral> {
        let cased = self.cased && other.cased;
        let fold = |s: &str| {
            if cased {
                s.to_owned()
            } else {
                s.to_ascii_lowercase()
            }
        };
        let (a, b) = (fold(&self.text), fold(&other.text));
        match (self.exact, other.exact) {
            (true, true) => (a == b).then(|| self.clone()),
            (true, false) => a.starts_with(&b).then(|| self.clone()),
            (false, true) => b.starts_with(&a).then(|| other.clone()),
            (false, false) if a.starts_with(&b) => Some(self.clone()),
            (false, false) => b.starts_with(&a).then(|| other.clone()),
        }
    }
}

/// The literals one of which every `file.path` the rule matches starts with; `None` when it
/// can match a path without one (or on events whose path no tree gates).
pub fn path_scope(rule: &Rule) -> Option<Vec<PathLiteral>> {
    if !rule.kinds.intersect(UNGATED_PATH_KINDS).is_empty() {
        return None;
    }
    scope(&rule.expr, &rule.items)
}

fn scope(expr: &Expr, items: &[Item]) -> Option<Vec<PathLiteral>> {
    match expr {
        Expr::Item(i) => items.get(*i).and_then(item_scope),
        Expr::And(xs) => {
            let mut out: Option<Vec<PathLiteral>> = None;
            for s in xs.iter().filter_map(|x| scope(x, items)) {
                out = Some(match out {
                    None => s,
                    Some(acc) => intersect(acc, s),
                });
            }
            out
        }
        Expr::Or(xs) => {
            let mut out = Vec::new();
            for x in xs {
                out.extend(scope(x, items)?);
            }
            Some(out)
        }
        Expr::Not(_) | Expr::Const(_) => None,
    }
}

fn intersect(a: Vec<PathLiteral>, b: Vec<PathLiteral>) -> Vec<PathLiteral> {
    if a.len().saturating_mul(b.len()) > MAX_ALTERNATIVES {
        return if a.len() <= b.len() { a } else { b };
    }
    let mut out = Vec::new();
    for x in &a {
        for y in &b {
            if let Some(m) = x.meet(y)
                && !out.contains(&m)
            {
                out.push(m);
            }
        }
    }
    out
}

fn item_scope(item: &Item) -> Option<Vec<PathLiteral>> {
    if item.accessor != Accessor::Field(Field::FilePath) {
        return None;
    }
    if item.all {
        // Every value must match: any one anchored value bounds the path.
        return item.values.iter().find_map(literal).map(|l| vec![l]);
    }
    if !item.presence.is_empty() || item.merged.is_some() || item.values.is_empty() {
        return None;
    }
    item.values.iter().map(literal).collect()
}

fn literal(p: &Pattern) -> Option<PathLiteral> {
    let (needle, exact, cased) = match p {
        Pattern::Exact { needle, cased } => (needle, true, *cased),
        Pattern::Prefix { needle, cased } => (needle, false, *cased),
        // Globs are case-insensitive unless `cased`, which the regex carries; folding both
        // sides is the conservative reading.
        Pattern::Regex {
            prefix: Some(prefix),
            ..
        } => (prefix, false, false),
        _ => return None,
    };
    Some(PathLiteral {
        text: String::from_utf8_lossy(needle).into_owned(),
        exact,
        cased,
    })
}

/// A rule whose path patterns lie outside every watched tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outside {
    /// Index in the engine's rules.
    pub rule: usize,
    pub literals: Vec<PathLiteral>,
    /// Directories that would let it fire (empty when none can be named).
    pub directories: Vec<String>,
}

/// The rules of `engine` that can never fire with file events collected under `trees`
/// (building blocks no correlation uses are left out: they fire nothing anyway).
pub fn outside(engine: &Engine, trees: &[String]) -> Vec<Outside> {
    let mut out = Vec::new();
    for (i, rule) in engine.rules().iter().enumerate() {
        if !engine.rule_is_live(i) {
            continue;
        }
        let Some(literals) = path_scope(rule) else {
            continue;
        };
        if literals.is_empty() || literals.iter().any(|l| trees.iter().any(|t| l.meets(t))) {
            continue;
        }
        let mut directories: Vec<String> = Vec::new();
        let mut all_named = true;
        for l in &literals {
            match l.directory() {
                Some(d) if !directories.contains(&d) => directories.push(d),
                Some(_) => {}
                None => all_named = false,
            }
        }
        if !all_named {
            directories.clear();
        }
        out.push(Outside {
            rule: i,
            literals,
            directories,
        });
    }
    out
}

/// Directories the active rules need watched beyond `trees`, each with the first rule that
/// asks for it, in rule order: for every rule whose paths are bounded by literals, the
/// directory of each literal no tree meets (a rule half inside the trees is half blind too:
/// `/etc/cron.d/` and `/var/spool/cron/` under the tree /etc alone wants /var/spool/cron).
pub fn wanted_trees(engine: &Engine, trees: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (i, rule) in engine.rules().iter().enumerate() {
        // A building block no correlation uses needs nothing watched.
        if !engine.rule_is_live(i) {
            continue;
        }
        let Some(literals) = path_scope(rule) else {
            continue;
        };
        for l in literals {
            if trees.iter().any(|t| l.meets(t)) {
                continue;
            }
            if let Some(d) = l.directory()
                && !out.iter().any(|(x, _)| *x == d)
            {
                out.push((d, rule.meta.id.clone()));
            }
        }
    }
    out
}

/// Warnings (in the form of refusals, though the rules stay loaded) for the rules that can never
/// fire under `trees`: file and line of the rule's path field, rule id, the literals.
/// `widened` says whether the agent adds the named directories from content.
pub fn check(
    engine: &Engine,
    files: &[RuleFile<'_>],
    trees: &[String],
    widened: bool,
) -> Vec<Refusal> {
    let shown_trees = trees.join(", ");
    outside(engine, trees)
        .into_iter()
        .filter_map(|o| {
            let rule = engine.rules().get(o.rule)?;
            let field = field_name(rule, files);
            let line = files
                .iter()
                .find(|f| f.path == rule.meta.file)
                .and_then(|f| {
                    let docs = locate::documents(f.text);
                    let doc = docs.iter().find(|d| d.line == rule.meta.line)?;
                    locate::key_line(doc, &field)
                })
                .unwrap_or(rule.meta.line);
            let literals: Vec<String> = o
                .literals
                .iter()
                .map(|l| format!("`{}{}`", l.text, if l.exact { "" } else { "*" }))
                .collect();
            let renames = if rule.kinds.contains(EventKind::FileRename) {
                " (but renames out of one)"
            } else {
                ""
            };
            let what = if o.directories.is_empty() {
                "it can never fire".to_owned()
            } else if widened {
                format!(
                    "the agent adds {} to its watch set while the rule is active \
                     ([fanotify] content_paths, within max_paths)",
                    o.directories.join(", ")
                )
            } else {
                format!(
                    "it can never fire unless {} is watched ([fanotify] paths)",
                    o.directories.join(", ")
                )
            };
            Some(Refusal {
                file: rule.meta.file.clone(),
                line: Some(line),
                rule_id: Some(rule.meta.id.clone()),
                title: Some(rule.meta.title.clone()),
                field: Some(field),
                message: format!(
                    "paths {} lie outside every watched file tree ({shown_trees}): no file \
                     event is collected there{renames}; {what}",
                    literals.join(", ")
                ),
            })
        })
        .collect()
}

/// The rule's path field as written (`TargetFilename` or auditd `name`).
fn field_name(rule: &Rule, files: &[RuleFile<'_>]) -> String {
    let text = files
        .iter()
        .find(|f| f.path == rule.meta.file)
        .map_or("", |f| f.text);
    if text.contains("TargetFilename") || !text.contains("name") {
        "TargetFilename".into()
    } else {
        "name".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, compile};
    use ringfence_event::Mode;

    fn rule(id: &str, detection: &str) -> String {
        format!(
            "title: t {id}\nid: {id}\nlogsource:\n  product: linux\n  category: file_event\n\
             detection:\n{detection}\nlevel: high\n"
        )
    }

    fn outside_of(text: &str, trees: &[&str]) -> Vec<Outside> {
        let files = [RuleFile {
            path: "r.yml",
            text,
        }];
        let c = compile(&files, &Options::new(Mode::Driverless));
        assert!(c.refusals.is_empty(), "{:?}", c.refusals);
        let trees: Vec<String> = trees.iter().map(|t| (*t).to_owned()).collect();
        outside(&c.engine, &trees)
    }

    const TREES: &[&str] = &["/etc", "/tmp", "/root/.ssh"];

    #[test]
    fn a_prefix_outside_every_tree_is_reported_with_its_directory() {
        let text = rule(
            "web",
            "  sel:\n    TargetFilename|startswith: '/var/www/html/'\n    TargetFilename|endswith: '.php'\n  condition: sel",
        );
        let o = outside_of(&text, TREES);
        assert_eq!(o.len(), 1, "{o:?}");
        assert_eq!(o[0].directories, ["/var/www/html"]);
        assert!(outside_of(&text, &["/var/www"]).is_empty());
        assert!(outside_of(&text, &["/"]).is_empty());
        // A tree deeper than the literal still meets it.
        assert!(outside_of(&text, &["/var/www/html/uploads"]).is_empty());
    }

    #[test]
    fn one_value_inside_a_tree_is_enough() {
        let text = rule(
            "mixed",
            "  sel:\n    TargetFilename|startswith:\n      - '/etc/cron.d/'\n      - '/var/spool/cron/'\n  condition: sel",
        );
        assert!(outside_of(&text, TREES).is_empty());
        let o = outside_of(&text, &["/tmp"]);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].directories, ["/etc/cron.d", "/var/spool/cron"]);
        // Half inside: no warning, but the other half is wanted.
        let files = [RuleFile {
            path: "r.yml",
            text: &text,
        }];
        let c = compile(&files, &Options::new(Mode::Driverless));
        assert_eq!(
            wanted_trees(&c.engine, &["/etc".to_owned()]),
            [("/var/spool/cron".to_owned(), "mixed".to_owned())]
        );
    }

    /// A building block no correlation uses fires nothing: it is not reported and asks for no
    /// tree (the SigmaHQ hardware-discovery rule would have had the agent watch /proc).
    #[test]
    fn an_unused_building_block_wants_no_tree() {
        let text = rule(
            "hw",
            "  sel:\n    TargetFilename|startswith: '/sys/class/dmi/id/'\n  condition: sel",
        );
        let overrides =
            "ringfence_overrides:\n  - id: hw\n    building_block: true\n    reason: a signal\n";
        let files = [
            RuleFile {
                path: "r.yml",
                text: &text,
            },
            RuleFile {
                path: "o.yml",
                text: overrides,
            },
        ];
        let c = compile(&files, &Options::new(Mode::Driverless));
        assert!(c.refusals.is_empty(), "{:?}", c.refusals);
        let trees = ["/etc".to_owned()];
        assert!(wanted_trees(&c.engine, &trees).is_empty());
        assert!(outside(&c.engine, &trees).is_empty());
        assert_eq!(
            outside_of(&text, &["/etc"]).len(),
            1,
            "without the override"
        );
    }

    #[test]
    fn unanchored_negated_and_alternative_conditions_are_not_reported() {
        for detection in [
            "  sel:\n    TargetFilename|contains: '/.ssh/'\n  condition: sel",
            "  sel:\n    TargetFilename|endswith: '/authorized_keys'\n  condition: sel",
            "  sel:\n    TargetFilename|startswith: '/var/www/'\n  condition: not sel",
            "  a:\n    TargetFilename|startswith: '/var/www/'\n  b:\n    Image|endswith: '/php'\n  condition: a or b",
            "  sel:\n    TargetFilename|re: '^/var/www/'\n  condition: sel",
        ] {
            let text = rule("x", detection);
            assert!(outside_of(&text, TREES).is_empty(), "{detection}");
        }
    }

    #[test]
    fn exact_values_globs_and_case_are_read_as_the_matcher_reads_them() {
        let exact = rule(
            "exact",
            "  sel:\n    TargetFilename: '/etc/ld.so.preload'\n  condition: sel",
        );
        assert!(outside_of(&exact, TREES).is_empty());
        // Sigma values are case-insensitive: `/ETC/` meets the tree /etc.
        let upper = rule(
            "upper",
            "  sel:\n    TargetFilename|startswith: '/ETC/'\n  condition: sel",
        );
        assert!(outside_of(&upper, TREES).is_empty());
        let glob = rule(
            "glob",
            "  sel:\n    TargetFilename: '/home/*/.bashrc'\n  condition: sel",
        );
        let o = outside_of(&glob, TREES);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].directories, ["/home"]);
        assert!(outside_of(&glob, &["/home"]).is_empty());
    }

    #[test]
    fn and_narrows_and_an_empty_meet_is_not_reported() {
        // Both literals hold: the tighter one decides.
        let both = rule(
            "both",
            "  a:\n    TargetFilename|startswith: '/usr/'\n  b:\n    TargetFilename|startswith: '/usr/lib/systemd/'\n  condition: a and b",
        );
        let o = outside_of(&both, &["/usr/bin"]);
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].directories, ["/usr/lib/systemd"]);
        assert!(outside_of(&both, &["/usr/lib"]).is_empty());
        // Contradictory literals: the rule is dead for other reasons; nothing to add.
        let none = rule(
            "none",
            "  a:\n    TargetFilename|startswith: '/srv/'\n  b:\n    TargetFilename|startswith: '/opt/'\n  condition: a and b",
        );
        assert!(outside_of(&none, TREES).is_empty());
    }

    #[test]
    fn check_names_file_line_rule_and_path() {
        let text = rule(
            "web",
            "  sel:\n    TargetFilename|startswith: '/var/www/'\n  condition: sel",
        );
        let files = [RuleFile {
            path: "rules/web.yml",
            text: &text,
        }];
        let c = compile(&files, &Options::new(Mode::Ebpf));
        let trees = vec!["/etc".to_owned()];
        let w = check(&c.engine, &files, &trees, true);
        assert_eq!(w.len(), 1);
        let shown = w[0].to_string();
        assert!(
            shown
                .starts_with("rules/web.yml:8: rule web: field TargetFilename: paths `/var/www/*`"),
            "{shown}"
        );
        assert!(shown.contains("the agent adds /var/www"), "{shown}");
        let w = check(&c.engine, &files, &trees, false);
        assert!(
            w[0].message.contains("can never fire unless /var/www"),
            "{w:?}"
        );
        assert_eq!(
            wanted_trees(&c.engine, &trees),
            [("/var/www".to_owned(), "web".to_owned())]
        );
    }
}
