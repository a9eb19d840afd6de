//! The compiled content set and how an event runs through it: a per-event-kind rule index, an
//! Aho-Corasick prefilter per field over the literals every match must contain, full rule
//! evaluation for the candidates only, then correlations fed by the rules that matched.
//!
//! The hot path allocates nothing: candidate marks live in a reused [`State`].

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use ringfence_event::{Event, EventKind};

use crate::access::{any_value, with_text};
use crate::correlation::{self, Correlation, Firing, Target};
use crate::mapping::Accessor;
use crate::rule::Rule;

/// Something that matched: a rule, or a correlation that fired.
#[derive(Debug, Clone, PartialEq)]
pub enum Hit {
    Rule(usize),
    Correlation(Firing),
}

/// Needles of one accessor and the rules each belongs to.
type NeedleGroup = (Accessor, Vec<Vec<u8>>, Vec<Vec<u32>>);

#[derive(Debug, Default)]
struct KindIndex {
    /// Rules with no usable literal: always evaluated.
    always: Vec<u32>,
    prefilters: Vec<Prefilter>,
}

#[derive(Debug)]
struct Prefilter {
    accessor: Accessor,
    automaton: AhoCorasick,
    /// Pattern id → rules it makes candidates.
    owners: Vec<Vec<u32>>,
}

/// Compiled content: rules, correlations and the index over them. Immutable and shareable.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<Rule>,
    correlations: Vec<Correlation>,
    by_kind: Vec<KindIndex>,
    /// Rule → (correlation, ref position) it feeds.
    rule_feeds: Vec<Vec<(usize, usize)>>,
    /// Correlation → (correlation, ref position) it feeds.
    corr_feeds: Vec<Vec<(usize, usize)>>,
}

/// Per-pipeline mutable state: correlation windows and the reused candidate scratch.
#[derive(Debug)]
pub struct State {
    marks: Vec<u64>,
    candidates: Vec<u32>,
    correlations: Vec<correlation::State>,
    pending: Vec<(usize, usize)>,
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

impl Engine {
    pub fn new(rules: Vec<Rule>, correlations: Vec<Correlation>) -> Engine {
        let mut by_kind: Vec<KindIndex> = EventKind::ALL
            .iter()
            .map(|_| KindIndex::default())
            .collect();
        for kind in EventKind::ALL {
            let idx = &mut by_kind[kind.index()];
            // accessor → (needles, owners)
            let mut groups: Vec<NeedleGroup> = Vec::new();
            for (i, rule) in rules.iter().enumerate() {
                if !rule.kinds.contains(kind) {
                    continue;
                }
                let Ok(i) = u32::try_from(i) else { continue };
                match rule.expr.needles(&rule.items) {
                    Some(needles) if !needles.is_empty() => {
                        for (acc, needle) in needles {
                            let g = match groups.iter().position(|g| g.0 == acc) {
                                Some(p) => p,
                                None => {
                                    groups.push((acc, Vec::new(), Vec::new()));
                                    groups.len() - 1
                                }
                            };
                            let (_, ns, owners) = &mut groups[g];
                            let lower = needle.to_ascii_lowercase();
                            match ns.iter().position(|n| *n == lower) {
                                Some(p) => {
                                    if owners[p].last() != Some(&i) {
                                        owners[p].push(i);
                                    }
                                }
                                None => {
                                    ns.push(lower);
                                    owners.push(vec![i]);
                                }
                            }
                        }
                    }
                    _ => idx.always.push(i),
                }
            }
            for (accessor, needles, owners) in groups {
                match AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&needles)
                {
                    Ok(automaton) => idx.prefilters.push(Prefilter {
                        accessor,
                        automaton,
                        owners,
                    }),
                    Err(_) => {
                        // Cannot happen for byte needles under the default limits; stay correct.
                        let mut all: Vec<u32> = owners.into_iter().flatten().collect();
                        idx.always.append(&mut all);
                    }
                }
            }
            idx.always.sort_unstable();
            idx.always.dedup();
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
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
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
        for pf in &idx.prefilters {
            let marks = &mut state.marks;
            let candidates = &mut state.candidates;
            any_value(pf.accessor, e, |v| {
                with_text(v, |t| {
                    for m in pf.automaton.find_overlapping_iter(t) {
                        for &r in pf.owners.get(m.pattern().as_usize()).into_iter().flatten() {
                            let (w, b) = ((r / 64) as usize, r % 64);
                            if let Some(word) = marks.get_mut(w)
                                && *word & (1 << b) == 0
                            {
                                *word |= 1 << b;
                                candidates.push(r);
                            }
                        }
                    }
                });
                false
            });
        }
        state.candidates.sort_unstable();
        let mut candidates = std::mem::take(&mut state.candidates);
        for &r in &candidates {
            let (w, b) = ((r / 64) as usize, r % 64);
            if let Some(word) = state.marks.get_mut(w) {
                *word &= !(1 << b);
            }
        }
        for &r in &candidates {
            let r = r as usize;
            if !enabled(r) {
                continue;
            }
            if let Some(rule) = self.rules.get(r)
                && rule.matches(e)
            {
                if rule.generate || silent_too {
                    hit(Hit::Rule(r));
                }
                self.feed(r, e, state, silent_too, hit);
            }
        }
        candidates.clear();
        state.candidates = candidates;
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
