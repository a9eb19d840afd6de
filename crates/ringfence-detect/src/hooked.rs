//! Kind coverage: whether a rule's event kinds reach the engine at all under the sensor's hooks.
//!
//! The eBPF sensor hooks each kind with the cheapest hook its profile allows on the kernel
//! (`[sensor] profile`): under `default`, on a kernel without BPF trampolines, memfd_create,
//! bpf(), memory made executable, accept and listen have no hook. A rule that runs only on
//! such kinds compiles (a profile change makes it live) but can never fire: [`dead_rules`]
//! finds it and [`check`] reports it, naming the kinds and what would enable them. The same
//! class of fault as a field no source fills, reported instead of refused.

use ringfence_event::{EventKind, KindSet};

use crate::Refusal;
use crate::engine::Engine;

/// A kind the sensor does not report, and the change that would make it report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhooked {
    pub kind: EventKind,
    /// `[sensor] profile = "deep"`, or why nothing would.
    pub remedy: String,
}

/// A rule that can never fire for want of hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadRule {
    /// Index in the engine's rules.
    pub rule: usize,
    /// Its kinds (every one unhooked).
    pub kinds: Vec<EventKind>,
    /// What would enable them, each once.
    pub remedies: Vec<String>,
}

/// The rules of `engine` whose every event kind is in `unhooked` (building blocks no
/// correlation uses are left out: they fire nothing anyway).
pub fn dead_rules(engine: &Engine, unhooked: &[Unhooked]) -> Vec<DeadRule> {
    let missing = unhooked
        .iter()
        .fold(KindSet::EMPTY, |set, u| set.union(KindSet::of(&[u.kind])));
    let mut out = Vec::new();
    for (i, rule) in engine.rules().iter().enumerate() {
        if !engine.rule_is_live(i) || rule.kinds.is_empty() || !rule.kinds.is_subset_of(missing) {
            continue;
        }
        let kinds: Vec<EventKind> = rule.kinds.iter().collect();
        let mut remedies: Vec<String> = Vec::new();
        for u in unhooked.iter().filter(|u| kinds.contains(&u.kind)) {
            if !remedies.contains(&u.remedy) {
                remedies.push(u.remedy.clone());
            }
        }
        out.push(DeadRule {
            rule: i,
            kinds,
            remedies,
        });
    }
    out
}

/// What would hook the kinds, grouped by remedy: `[sensor] profile = "deep" would hook
/// bpf-load, memfd-create; another kernel (...) would hook module-load`.
pub fn remedies(unhooked: &[Unhooked]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for u in unhooked {
        match groups.iter_mut().find(|(r, _)| *r == u.remedy) {
            Some((_, kinds)) => kinds.push(u.kind.action()),
            None => groups.push((&u.remedy, vec![u.kind.action()])),
        }
    }
    groups
        .iter()
        .map(|(remedy, kinds)| format!("{remedy} would hook {}", kinds.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Warnings (in the form of refusals, though the rules stay loaded) for the rules that can
/// never fire: file and line of the rule, its id and title, its kinds and the remedy. `under`
/// says what lacks the hooks (`the eBPF sensor's "default" profile on a kernel without BPF
/// trampolines`).
pub fn check(engine: &Engine, unhooked: &[Unhooked], under: &str) -> Vec<Refusal> {
    dead_rules(engine, unhooked)
        .into_iter()
        .filter_map(|d| {
            let rule = engine.rules().get(d.rule)?;
            let kinds: Vec<&str> = d.kinds.iter().map(|k| k.action()).collect();
            Some(Refusal {
                file: rule.meta.file.clone(),
                line: Some(rule.meta.line),
                rule_id: Some(rule.meta.id.clone()),
                title: Some(rule.meta.title.clone()),
                field: None,
                message: format!(
                    "it can never fire: it runs only on {} events, which {under} has no hook \
                     for; {} would enable it",
                    kinds.join(", "),
                    d.remedies.join(" or ")
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, RuleFile, compile};
    use ringfence_event::Mode;

    const BPF: &str = "title: bpf\nid: bpf\nlogsource:\n  product: linux\n  category: bpf_load\n\
        detection:\n  sel:\n    event.action: bpf-load\n  condition: sel\nlevel: high\n";

    fn engine_of(texts: &[(&str, &str)]) -> Engine {
        let files: Vec<RuleFile<'_>> = texts
            .iter()
            .map(|(path, text)| RuleFile { path, text })
            .collect();
        let c = compile(&files, &Options::new(Mode::Ebpf));
        assert!(c.refusals.is_empty(), "{:?}", c.refusals);
        c.engine
    }

    fn unhooked(kinds: &[EventKind]) -> Vec<Unhooked> {
        kinds
            .iter()
            .map(|&kind| Unhooked {
                kind,
                remedy: "[sensor] profile = \"deep\"".into(),
            })
            .collect()
    }

    #[test]
    fn a_rule_on_unhooked_kinds_only_is_reported_with_its_kind_and_remedy() {
        let engine = engine_of(&[("rules/bpf.yml", BPF)]);
        assert_eq!(
            engine.rules()[0].kinds.iter().collect::<Vec<_>>(),
            [EventKind::BpfLoad]
        );
        let w = check(
            &engine,
            &unhooked(&[EventKind::BpfLoad, EventKind::MemfdCreate]),
            "the `default` profile",
        );
        assert_eq!(w.len(), 1, "{w:?}");
        let shown = w[0].to_string();
        assert_eq!(
            shown,
            "rules/bpf.yml:1: rule bpf: it can never fire: it runs only on bpf-load events, \
             which the `default` profile has no hook for; [sensor] profile = \"deep\" would \
             enable it"
        );
        assert!(dead_rules(&engine, &unhooked(&[EventKind::MemfdCreate])).is_empty());
        let mut both = unhooked(&[EventKind::BpfLoad, EventKind::MemfdCreate]);
        both.push(Unhooked {
            kind: EventKind::ModuleLoad,
            remedy: "another kernel".into(),
        });
        assert_eq!(
            remedies(&both),
            "[sensor] profile = \"deep\" would hook bpf-load, memfd-create; another kernel \
             would hook module-load"
        );
        assert!(dead_rules(&engine, &[]).is_empty());
    }

    #[test]
    fn a_rule_with_one_hooked_kind_is_not_reported() {
        let exec = "title: x\nid: x\nlogsource:\n  product: linux\n  category: process_creation\n\
            detection:\n  sel:\n    Image|endswith: /evil\n  condition: sel\nlevel: high\n";
        let engine = engine_of(&[("rules/x.yml", exec)]);
        let w = check(
            &engine,
            &unhooked(&[EventKind::MemfdCreate, EventKind::BpfLoad]),
            "the `default` profile",
        );
        assert!(w.is_empty(), "{w:?}");
        let all: Vec<EventKind> = engine.rules()[0].kinds.iter().collect();
        assert_eq!(dead_rules(&engine, &unhooked(&all)).len(), 1);
    }
}
