//! The compiled content set and how an event runs through it: a per-event-kind rule index
//! (each rule's condition with what the kind alone decides folded away), one Aho-Corasick pass
//! over the joined texts of the fields whose literals every match must contain, full rule
//! evaluation for the candidates only, then correlations fed by the rules that matched.
//!
//! The hot path allocates nothing once warm: candidate marks and the joined text live in a
//! reused [`State`].

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use ringfence_event::{Event, EventKind};

use crate::access::{any_value, with_text};
use crate::correlation::{self, Correlation, Firing, Target};
use crate::mapping::Accessor;
use crate::rule::{Expr, Rule};

/// Something that matched: a rule, or a correlation that fired.
#[derive(Debug, Clone, PartialEq)]
pub enum Hit {
    Rule(usize),
    Correlation(Firing),
}

/// `slots` entry of an item no scan decides.
const NO_SLOT: u32 = u32::MAX;

/// The needles of one accessor while an index is built.
struct NeedleGroup {
    accessor: Accessor,
    needles: Vec<Vec<u8>>,
    position: HashMap<Vec<u8>, usize>,
    /// Per needle: rules it makes candidates.
    owners: Vec<Vec<u32>>,
    /// Per needle: item slots it decides.
    decides: Vec<Vec<u32>>,
}

impl NeedleGroup {
    /// The index of `needle` (ASCII-lowercased), added if new.
    fn slot(&mut self, needle: &[u8]) -> usize {
        let lower = needle.to_ascii_lowercase();
        if let Some(&p) = self.position.get(&lower) {
            return p;
        }
        self.needles.push(lower.clone());
        self.owners.push(Vec::new());
        self.decides.push(Vec::new());
        self.position.insert(lower, self.needles.len() - 1);
        self.needles.len() - 1
    }
}

/// Each rule's condition on events of `kind` (see [`Rule::specialized_for`]); `None` for
/// rules that never match them.
fn conditions_for(kind: EventKind, rules: &[Rule]) -> Vec<Option<Expr>> {
    rules
        .iter()
        .map(|rule| {
            rule.kinds
                .contains(kind)
                .then(|| rule.specialized_for(kind))
                .filter(|x| *x != Expr::Const(false))
        })
        .collect()
}

/// The index for one event kind, given each rule's condition on it: candidate needles per
/// accessor, then the needles of the items a scan can decide on accessors that are scanned
/// anyway.
fn build_index(conditions: Vec<Option<Expr>>, rules: &[Rule], slot_count: &mut u32) -> KindIndex {
    let mut idx = KindIndex {
        slots: vec![Box::default(); rules.len()],
        ..KindIndex::default()
    };
    let mut groups: Vec<NeedleGroup> = Vec::new();
    for (i, (rule, condition)) in rules.iter().zip(&conditions).enumerate() {
        let Ok(i) = u32::try_from(i) else { continue };
        let Some(condition) = condition else { continue };
        match condition.needles(&rule.items) {
            Some(needles) if !needles.is_empty() => {
                for (acc, needle) in needles {
                    let g = match groups.iter().position(|g| g.accessor == acc) {
                        Some(p) => p,
                        None => {
                            groups.push(NeedleGroup {
                                accessor: acc,
                                needles: Vec::new(),
                                position: HashMap::new(),
                                owners: Vec::new(),
                                decides: Vec::new(),
                            });
                            groups.len() - 1
                        }
                    };
                    let group = &mut groups[g];
                    let n = group.slot(&needle);
                    if group.owners[n].last() != Some(&i) {
                        group.owners[n].push(i);
                    }
                }
            }
            _ => idx.always.push(i),
        }
    }
    for (r, rule) in rules.iter().enumerate() {
        if conditions.get(r).is_none_or(Option::is_none) {
            continue;
        }
        for (i, item) in rule.items.iter().enumerate() {
            let Some(group) = groups.iter_mut().find(|g| g.accessor == item.accessor) else {
                continue;
            };
            let Some(needles) = item.deciding_needles() else {
                continue;
            };
            let Some(rule_slots) = idx.slots.get_mut(r) else {
                continue;
            };
            if rule_slots.is_empty() {
                *rule_slots = vec![NO_SLOT; rule.items.len()].into_boxed_slice();
            }
            let Some(slot) = rule_slots.get_mut(i) else {
                continue;
            };
            if *slot == NO_SLOT {
                *slot = *slot_count;
                *slot_count += 1;
            }
            for needle in needles {
                let n = group.slot(needle);
                if group.decides[n].last() != Some(slot) {
                    group.decides[n].push(*slot);
                }
            }
        }
    }
    // A field with a long list of its own is scanned alone: the others' short texts would
    // pay for its large automaton, and its long text for their needles.
    let (alone, joined): (Vec<NeedleGroup>, Vec<NeedleGroup>) = groups
        .into_iter()
        .partition(|g| g.needles.len() > SCAN_ALONE);
    let sets = alone.into_iter().map(|g| vec![g]).chain(Some(joined));
    for groups in sets.filter(|g| !g.is_empty()) {
        match Scan::new(groups) {
            Ok(scan) => idx.scans.push(scan),
            // No separator byte or no automaton (neither happens with real content): every
            // rule the scan would have chosen runs on every event instead.
            Err(groups) => {
                let mut all: Vec<u32> = groups
                    .into_iter()
                    .flat_map(|g| g.owners)
                    .flatten()
                    .collect();
                idx.always.append(&mut all);
            }
        }
    }
    idx.always.sort_unstable();
    idx.always.dedup();
    idx.conditions = conditions;
    idx
}

#[derive(Debug, Default)]
struct KindIndex {
    /// Rules with no usable literal: always evaluated.
    always: Vec<u32>,
    /// Per rule: its condition on this kind, `None` when it never matches.
    conditions: Vec<Option<Expr>>,
    scans: Vec<Scan>,
    /// Per rule, per item: the bit slot a prefilter scan decides it in, or [`NO_SLOT`]; empty
    /// for rules with no item decided on this kind.
    slots: Vec<Box<[u32]>>,
}

/// The prefilter of one kind: the texts of every field it looks at, joined by a byte no needle
/// holds, searched by one automaton in one pass; a match counts for the field whose text it
/// lies in. One pass over ~150 bytes costs far less than a dozen over a few bytes each.
#[derive(Debug)]
struct Scan {
    /// The fields joined, in order.
    accessors: Vec<Accessor>,
    separator: u8,
    automaton: AhoCorasick,
    /// Pattern id → what a match means in each field that looks for it.
    uses: Vec<Box<[NeedleUse]>>,
}

#[derive(Debug)]
struct NeedleUse {
    /// Index into [`Scan::accessors`].
    field: u16,
    /// Rules it makes candidates.
    owners: Box<[u32]>,
    /// Item slots it decides (found: the item matches).
    decides: Box<[u32]>,
}

impl Scan {
    /// The scan over `groups`' needles; the groups back when it cannot be built.
    fn new(groups: Vec<NeedleGroup>) -> Result<Scan, Vec<NeedleGroup>> {
        // Not an ASCII letter, so case folding cannot turn a needle byte into it.
        let separator = (0u8..=0x1f).chain(0x7f..=0xff).find(|b| {
            !groups
                .iter()
                .flat_map(|g| &g.needles)
                .any(|n| n.contains(b))
        });
        let (Some(separator), Ok(_)) = (separator, u16::try_from(groups.len())) else {
            return Err(groups);
        };
        let mut needles: Vec<Vec<u8>> = Vec::new();
        let mut position: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut uses: Vec<Vec<NeedleUse>> = Vec::new();
        let mut accessors = Vec::with_capacity(groups.len());
        for (field, g) in (0u16..).zip(&groups) {
            accessors.push(g.accessor);
            for ((needle, owners), decides) in g.needles.iter().zip(&g.owners).zip(&g.decides) {
                let id = *position.entry(needle.clone()).or_insert_with(|| {
                    needles.push(needle.clone());
                    uses.push(Vec::new());
                    needles.len() - 1
                });
                if let Some(u) = uses.get_mut(id) {
                    u.push(NeedleUse {
                        field,
                        owners: owners.clone().into_boxed_slice(),
                        decides: decides.clone().into_boxed_slice(),
                    });
                }
            }
        }
        let Some(automaton) = prefilter_automaton(&needles) else {
            return Err(groups);
        };
        Ok(Scan {
            accessors,
            separator,
            automaton,
            uses: uses.into_iter().map(Vec::into_boxed_slice).collect(),
        })
    }

    /// Marks the rules `e` makes candidates and the items its texts decide.
    fn run(&self, e: &Event, state: &mut State) {
        let (text, regions) = (&mut state.text, &mut state.regions);
        text.clear();
        regions.clear();
        for (field, acc) in (0u16..).zip(&self.accessors) {
            any_value(*acc, e, |v| {
                with_text(v, |t| {
                    if !regions.is_empty() {
                        text.push(self.separator);
                    }
                    text.extend_from_slice(t);
                    regions.push((text.len(), field));
                });
                false
            });
        }
        for m in self.automaton.find_overlapping_iter(&text[..]) {
            // No needle holds the separator, so a match lies within one field's text.
            let Some(&(_, field)) = regions.get(regions.partition_point(|r| r.0 < m.end())) else {
                continue;
            };
            for u in self.uses.get(m.pattern().as_usize()).into_iter().flatten() {
                if u.field != field {
                    continue;
                }
                for &r in &u.owners {
                    if set_bit(&mut state.marks, r) {
                        state.candidates.push(r);
                    }
                }
                for &slot in &u.decides {
                    if set_bit(&mut state.found, slot) {
                        state.found_slots.push(slot);
                    }
                }
            }
        }
    }
}

/// Compiled content: rules, correlations and the index over them. Immutable and shareable.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    correlations: Vec<Correlation>,
    /// Per event kind; kinds that run the same rules share one index.
    by_kind: Vec<Arc<KindIndex>>,
    /// Rule → (correlation, ref position) it feeds.
    rule_feeds: Vec<Vec<(usize, usize)>>,
    /// Correlation → (correlation, ref position) it feeds.
    corr_feeds: Vec<Vec<(usize, usize)>>,
    /// Item slots the prefilter scans decide, over all kinds.
    slot_count: u32,
}

/// How the index serves one event kind (for benchmarks and `rules check` reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindSummary {
    pub kind: EventKind,
    /// Rules that run on this kind.
    pub rules: usize,
    /// Of those, rules with no usable literal, evaluated on every event of the kind.
    pub always: usize,
    /// Fields with a prefilter automaton.
    pub prefilters: usize,
    /// Needles over all those automatons.
    pub needles: usize,
    /// Heap bytes of those automatons.
    pub bytes: usize,
    /// Whether an earlier kind running the same rules owns this index (and its bytes).
    pub shared: bool,
}

/// Per-pipeline mutable state: correlation windows and the reused candidate scratch.
#[derive(Debug)]
pub struct State {
    marks: Vec<u64>,
    candidates: Vec<u32>,
    correlations: Vec<correlation::State>,
    pending: Vec<(usize, usize)>,
    /// Items the current event's scans found, as bits by slot, and the slots set (to clear).
    found: Vec<u64>,
    found_slots: Vec<u32>,
    /// The current event's scanned texts, joined, and where each ends with its field.
    text: Vec<u8>,
    regions: Vec<(usize, u16)>,
    /// Rules fully evaluated so far (the prefilter's candidates), for benchmarks.
    pub evaluated: u64,
}

impl State {
    /// Bytes of correlation state `correlation` holds.
    pub fn correlation_bytes(&self, correlation: usize) -> usize {
        self.correlations.get(correlation).map_or(0, |s| s.bytes())
    }

    /// Correlation groups evicted so far, over all correlations.
    pub fn evicted_groups(&self) -> u64 {
        self.correlations.iter().map(|s| s.evicted).sum()
    }

    /// Groups held now, over all correlations.
    pub fn groups(&self) -> usize {
        self.correlations
            .iter()
            .map(correlation::State::groups)
            .sum()
    }
}

/// A field with more needles than this gets a scan of its own.
const SCAN_ALONE: usize = 256;

/// Above this size a prefilter's DFA gives way to the compact NFA.
const MAX_DFA_BYTES: usize = 16 << 20;

/// One automaton over `needles`, ASCII case-insensitive, reporting every occurrence of every
/// needle. A DFA is several times faster per byte than the NFA on long command lines; it is
/// kept when it stays under [`MAX_DFA_BYTES`].
fn prefilter_automaton(needles: &[Vec<u8>]) -> Option<AhoCorasick> {
    let build = |kind| {
        AhoCorasickBuilder::new()
            .kind(kind)
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(needles)
            .ok()
    };
    match build(Some(AhoCorasickKind::DFA)) {
        Some(dfa) if dfa.memory_usage() <= MAX_DFA_BYTES => Some(dfa),
        _ => build(None),
    }
}

/// Sets bit `i`; true when it was clear.
#[inline]
fn set_bit(bits: &mut [u64], i: u32) -> bool {
    let (w, b) = ((i / 64) as usize, i % 64);
    match bits.get_mut(w) {
        Some(word) if *word & (1 << b) == 0 => {
            *word |= 1 << b;
            true
        }
        _ => false,
    }
}

#[inline]
fn clear_bit(bits: &mut [u64], i: u32) {
    if let Some(word) = bits.get_mut((i / 64) as usize) {
        *word &= !(1 << (i % 64));
    }
}

#[inline]
fn bit(bits: &[u64], i: u32) -> bool {
    bits.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

impl Engine {
    pub fn new(rules: Vec<Rule>, correlations: Vec<Correlation>) -> Engine {
        let mut slot_count = 0u32;
        let mut built: Vec<Arc<KindIndex>> = Vec::new();
        let empty = Arc::new(KindIndex::default());
        let mut by_kind: Vec<Arc<KindIndex>> = vec![empty; EventKind::ALL.len()];
        for kind in EventKind::ALL {
            let conditions = conditions_for(kind, &rules);
            let idx = match built.iter().find(|idx| idx.conditions == conditions) {
                Some(idx) => Arc::clone(idx),
                None => {
                    let idx = Arc::new(build_index(conditions, &rules, &mut slot_count));
                    built.push(Arc::clone(&idx));
                    idx
                }
            };
            if let Some(slot) = by_kind.get_mut(kind.index()) {
                *slot = idx;
            }
        }
        let mut rule_feeds = vec![Vec::new(); rules.len()];
        let mut corr_feeds = vec![Vec::new(); correlations.len()];
        for (c, corr) in correlations.iter().enumerate() {
            for (k, t) in corr.refs.iter().enumerate() {
                match t {
                    Target::Rule(r) => {
                        if let Some(f) = rule_feeds.get_mut(*r) {
                            f.push((c, k));
                        }
                    }
                    Target::Correlation(j) => {
                        if let Some(f) = corr_feeds.get_mut(*j) {
                            f.push((c, k));
                        }
                    }
                }
            }
        }
        Engine {
            rules,
            correlations,
            by_kind,
            rule_feeds,
            corr_feeds,
            slot_count,
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }

    /// The index, per event kind that has rules.
    pub fn index_summary(&self) -> Vec<KindSummary> {
        EventKind::ALL
            .iter()
            .filter_map(|&kind| {
                let idx = self.by_kind.get(kind.index())?;
                let shared = EventKind::ALL.iter().take_while(|k| **k != kind).any(|k| {
                    self.by_kind
                        .get(k.index())
                        .is_some_and(|o| Arc::ptr_eq(o, idx))
                });
                let rules = idx.conditions.iter().flatten().count();
                (rules > 0).then(|| KindSummary {
                    kind,
                    rules,
                    always: idx.always.len(),
                    prefilters: idx.scans.iter().map(|s| s.accessors.len()).sum(),
                    needles: idx.scans.iter().map(|s| s.automaton.patterns_len()).sum(),
                    bytes: idx.scans.iter().map(|s| s.automaton.memory_usage()).sum(),
                    shared,
                })
            })
            .collect()
    }

    /// Fresh state for one pipeline.
    pub fn new_state(&self) -> State {
        State {
            marks: vec![0; self.rules.len().div_ceil(64)],
            candidates: Vec::with_capacity(self.rules.len()),
            correlations: self
                .correlations
                .iter()
                .map(|_| correlation::State::new())
                .collect(),
            pending: Vec::new(),
            found: vec![0; (self.slot_count as usize).div_ceil(64)],
            found_slots: Vec::new(),
            text: Vec::new(),
            regions: Vec::new(),
            evaluated: 0,
        }
    }

    /// Runs every rule and correlation on `e`; calls `hit` for each finding-generating match.
    pub fn evaluate(&self, e: &Event, state: &mut State, hit: &mut dyn FnMut(Hit)) {
        self.evaluate_filtered(e, state, &|_| true, hit);
    }

    /// As [`Engine::evaluate`], skipping rules for which `enabled` says no.
    pub fn evaluate_filtered(
        &self,
        e: &Event,
        state: &mut State,
        enabled: &dyn Fn(usize) -> bool,
        hit: &mut dyn FnMut(Hit),
    ) {
        self.evaluate_inner(e, state, enabled, false, hit);
    }

    /// The evaluation loop; `silent_too` also reports matches of rules that generate no
    /// findings of their own (content tests use it).
    pub(crate) fn evaluate_inner(
        &self,
        e: &Event,
        state: &mut State,
        enabled: &dyn Fn(usize) -> bool,
        silent_too: bool,
        hit: &mut dyn FnMut(Hit),
    ) {
        let Some(kind) = e.kind else { return };
        let Some(idx) = self.by_kind.get(kind.index()) else {
            return;
        };
        state.candidates.clear();
        state.candidates.extend_from_slice(&idx.always);
        for scan in &idx.scans {
            scan.run(e, state);
        }
        state.candidates.sort_unstable();
        let mut candidates = std::mem::take(&mut state.candidates);
        for &r in &candidates {
            clear_bit(&mut state.marks, r);
        }
        state.evaluated += candidates.len() as u64;
        for &r in &candidates {
            let r = r as usize;
            // A building block that no correlation uses has nothing to feed.
            let feeds_nothing = self.rule_feeds.get(r).is_none_or(Vec::is_empty);
            if !enabled(r)
                || (!silent_too && feeds_nothing && self.rules.get(r).is_some_and(|x| !x.generate))
            {
                continue;
            }
            let (Some(rule), Some(Some(condition))) = (self.rules.get(r), idx.conditions.get(r))
            else {
                continue;
            };
            let slots = idx.slots.get(r).map_or(&[][..], |s| &s[..]);
            let found = &state.found;
            let matched = rule.matches_expr_with(condition, e, &|i| match slots.get(i) {
                Some(&slot) if slot != NO_SLOT => Some(bit(found, slot)),
                _ => None,
            });
            if matched {
                if rule.generate || silent_too {
                    hit(Hit::Rule(r));
                }
                self.feed(r, e, state, silent_too, hit);
            }
        }
        candidates.clear();
        state.candidates = candidates;
        for &slot in &state.found_slots {
            clear_bit(&mut state.found, slot);
        }
        state.found_slots.clear();
    }

    /// Runs one output (rules first, then correlations, as numbered by
    /// [`Engine::output_count`]) on `e`: the per-rule path the agent's probation measures.
    pub fn evaluate_output(
        &self,
        output: usize,
        e: &Event,
        state: &mut State,
        hit: &mut dyn FnMut(Hit),
    ) {
        if let Some(rule) = self.rules.get(output) {
            if rule.generate && rule.matches(e) {
                hit(Hit::Rule(output));
            }
            return;
        }
        let c = output - self.rules.len();
        let Some(corr) = self.correlations.get(c) else {
            return;
        };
        // A correlation runs its own base rules.
        for (k, t) in corr.refs.iter().enumerate() {
            if let Target::Rule(r) = t
                && self.rules.get(*r).is_some_and(|rule| rule.matches(e))
                && let Some(state_c) = state.correlations.get_mut(c)
                && let Some(f) = corr.feed(c, k, e, state_c)
                && corr.generate
            {
                hit(Hit::Correlation(f));
            }
        }
    }

    /// Whether rule `r` can have any effect: it raises findings, or feeds a correlation. A
    /// building block no correlation uses has none (and needs no file tree watched).
    pub fn rule_is_live(&self, r: usize) -> bool {
        self.rules.get(r).is_some_and(|rule| rule.generate)
            || self.rule_feeds.get(r).is_some_and(|f| !f.is_empty())
    }

    /// Rules plus correlations.
    pub fn output_count(&self) -> usize {
        self.rules.len() + self.correlations.len()
    }

    fn feed(
        &self,
        rule: usize,
        e: &Event,
        state: &mut State,
        silent_too: bool,
        hit: &mut dyn FnMut(Hit),
    ) {
        let Some(feeds) = self.rule_feeds.get(rule) else {
            return;
        };
        if feeds.is_empty() {
            return;
        }
        state.pending.clear();
        state.pending.extend_from_slice(feeds);
        let mut steps = 0;
        while let Some((c, k)) = state.pending.pop() {
            steps += 1;
            if steps > 4096 {
                break;
            }
            let (Some(corr), Some(cs)) = (self.correlations.get(c), state.correlations.get_mut(c))
            else {
                continue;
            };
            if let Some(f) = corr.feed(c, k, e, cs) {
                if let Some(next) = self.corr_feeds.get(c) {
                    state.pending.extend_from_slice(next);
                }
                if corr.generate || silent_too {
                    hit(Hit::Correlation(f));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use ringfence_event::{Event, EventKind, Mode};

    use crate::{Hit, Options, RuleFile, compile};

    const AUDIT_RULE: &str = "title: whoami\nid: audit-whoami\nlogsource:\n  product: linux\n  service: auditd\ndetection:\n  sel:\n    type: EXECVE\n    a0: whoami\n  syscall:\n    type: SYSCALL\n    SYSCALL: execve\n  condition: sel and syscall\nlevel: low\n";

    fn exec(args: &[&str]) -> Event {
        let mut e = Event {
            kind: Some(EventKind::ProcessExec),
            ..Event::default()
        };
        e.process_mut().args = args.iter().map(|a| (*a).to_owned()).collect();
        e
    }

    fn hits(engine: &crate::Engine, e: &Event) -> Vec<Hit> {
        let mut state = engine.new_state();
        let mut out = Vec::new();
        engine.evaluate(e, &mut state, &mut |h| out.push(h));
        out
    }

    /// A literal one field looks for, found in another field's text, neither makes the rule a
    /// candidate nor decides its item: the joined scan keeps fields apart.
    #[test]
    fn the_joined_scan_keeps_fields_apart() {
        let rule = "title: t\nid: fields-apart\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /bash\n    CommandLine|contains: evilword\n  parent:\n    ParentCommandLine|contains: zzzword\n  condition: sel or parent\nlevel: low\n";
        let files = [RuleFile {
            path: "apart.yml",
            text: rule,
        }];
        let engine = compile(&files, &Options::new(Mode::Ebpf)).engine;
        assert_eq!(engine.rules().len(), 1);
        let exec_index = engine.index_summary();
        assert_eq!(
            exec_index.first().map(|k| k.prefilters),
            Some(2),
            "{exec_index:?}"
        );
        let event = |cmd: &str, parent_cmd: &str| {
            let mut e = exec(&["bash"]);
            let p = e.process_mut();
            p.executable = Some("/bin/bash".into());
            p.command_line = Some(cmd.into());
            p.parent = Some(ringfence_event::Parent {
                command_line: Some(parent_cmd.into()),
                ..Default::default()
            });
            e
        };
        assert!(hits(&engine, &event("bash -c true", "sh -c evilword")).is_empty());
        assert!(hits(&engine, &event("bash", "evilword")).is_empty());
        assert_eq!(
            hits(&engine, &event("bash -c EvilWord", "sh")),
            vec![Hit::Rule(0)]
        );
        assert_eq!(
            hits(&engine, &event("zsh", "sh -c zzzword")),
            vec![Hit::Rule(0)]
        );
    }

    /// The audit record type an exec stands for is folded away per kind, so the rule's
    /// prefilter is its `a0` literal, not `EXECVE` (which every exec holds).
    #[test]
    fn items_the_kind_decides_are_folded_before_indexing() {
        let files = [RuleFile {
            path: "audit.yml",
            text: AUDIT_RULE,
        }];
        let engine = compile(&files, &Options::new(Mode::Ebpf)).engine;
        assert_eq!(engine.rules().len(), 1);
        let exec_index = engine
            .index_summary()
            .into_iter()
            .find(|k| k.kind == EventKind::ProcessExec)
            .unwrap();
        assert_eq!(exec_index.always, 0, "{exec_index:?}");
        assert_eq!(exec_index.needles, 1, "{exec_index:?}");
        // Kinds whose audit types rule it out hold no rule at all.
        assert!(
            engine
                .index_summary()
                .iter()
                .all(|k| k.kind == EventKind::ProcessExec)
        );

        assert_eq!(hits(&engine, &exec(&["whoami"])), vec![Hit::Rule(0)]);
        assert_eq!(hits(&engine, &exec(&["WhoAmI"])), vec![Hit::Rule(0)]);
        assert!(hits(&engine, &exec(&["id"])).is_empty());
        let mut fork = exec(&["whoami"]);
        fork.kind = Some(EventKind::ProcessFork);
        assert!(hits(&engine, &fork).is_empty());
    }
}
