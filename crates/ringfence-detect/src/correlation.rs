//! Sigma correlation rules (event_count, value_count, temporal, temporal_ordered) with
//! group-by and timespan over event timestamps. State is bounded: each correlation keeps at
//! most [`MAX_GROUPS`] groups, evicting the least recently used (counted), and each group a
//! bounded window.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;

use lru::LruCache;
use ringfence_event::{Event, KindSet, Mode};
use rsigma_parser::{
    ConditionExpr, ConditionOperator, CorrelationCondition, CorrelationType, SelectorPattern,
};

use crate::access::{any_value, with_text};
use crate::compile::{PendingCorrelation, Refusal, filled};
use crate::locate;
use crate::mapping::{self, Accessor, Family};
use crate::rule::{Rule, RuleMeta};

/// Groups one correlation keeps at most.
pub const MAX_GROUPS: usize = 10_000;
/// Distinct values one value_count group keeps at most.
const MAX_VALUES: usize = 10_000;
/// Timestamps one event_count group keeps at most.
const MAX_WINDOW: usize = 100_000;

/// What a correlation counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Rule(usize),
    Correlation(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::EventCount => "event_count",
            Kind::ValueCount => "value_count",
            Kind::Temporal => "temporal",
            Kind::TemporalOrdered => "temporal_ordered",
        }
    }
}

/// A compiled correlation.
#[derive(Debug, Clone)]
pub struct Correlation {
    pub meta: RuleMeta,
    pub kind: Kind,
    pub refs: Vec<Target>,
    /// The names the rule used for its refs, for temporal conditions.
    pub ref_names: Vec<String>,
    /// Group-by field names as written.
    pub group_names: Vec<String>,
    /// Per ref: the accessors of the group-by fields.
    pub group_by: Vec<Vec<Accessor>>,
    /// Per ref: the counted field of a value_count.
    pub value_field: Vec<Option<Accessor>>,
    pub span_ns: i64,
    pub predicates: Vec<(ConditionOperator, u64)>,
    /// A temporal rule's boolean condition over its refs (default: all of them).
    pub extended: Option<ConditionExpr>,
    /// Whether its firings are findings (false when only another correlation uses it).
    pub generate: bool,
    /// Sigma `generate: true`: the referenced rules still make their own findings.
    pub refs_generate: bool,
    window_cap: usize,
}

/// One firing.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    pub correlation: usize,
    /// Group-by field → value.
    pub group: Vec<(String, String)>,
    /// Events (event_count), distinct values (value_count) or refs seen (temporal).
    pub count: u64,
}

#[derive(Debug, Clone)]
enum GroupState {
    Count(VecDeque<i64>),
    Values(HashMap<Box<str>, i64>),
    Times(Vec<Option<i64>>),
}

impl GroupState {
    fn bytes(&self) -> usize {
        match self {
            GroupState::Count(q) => q.len() * 8,
            GroupState::Values(m) => m.keys().map(|k| k.len() + 32).sum(),
            GroupState::Times(t) => t.len() * 16,
        }
    }
}

/// The live state of one correlation.
#[derive(Debug)]
pub struct State {
    groups: LruCache<Box<[Box<str>]>, GroupState>,
    /// Groups evicted to stay under [`MAX_GROUPS`].
    pub evicted: u64,
}

impl State {
    pub fn new() -> State {
        State {
            groups: LruCache::new(NonZeroUsize::MIN.saturating_add(MAX_GROUPS - 1)),
            evicted: 0,
        }
    }

    /// Bytes held, roughly.
    pub fn bytes(&self) -> usize {
        self.groups
            .iter()
            .map(|(k, v)| 64 + k.iter().map(|s| s.len() + 16).sum::<usize>() + v.bytes())
            .sum()
    }

    pub fn groups(&self) -> usize {
        self.groups.len()
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

impl Correlation {
    /// Feeds a match of ref `k` at event `e`; returns a firing when the condition holds.
    pub fn feed(&self, index: usize, k: usize, e: &Event, state: &mut State) -> Option<Firing> {
        let accessors = self.group_by.get(k)?;
        let mut key: Vec<Box<str>> = Vec::with_capacity(accessors.len());
        for acc in accessors {
            let mut text: Box<str> = Box::from("");
            any_value(*acc, e, |v| {
                text = with_text(v, |t| String::from_utf8_lossy(t).into());
                true
            });
            key.push(text);
        }
        let key: Box<[Box<str>]> = key.into();
        let t = e.timestamp.as_nanos();
        let since = t.saturating_sub(self.span_ns);
        if !state.groups.contains(&key) && state.groups.len() >= MAX_GROUPS {
            state.evicted += 1;
        }
        let group = state
            .groups
            .get_or_insert_mut(key.clone(), || match self.kind {
                Kind::EventCount => GroupState::Count(VecDeque::new()),
                Kind::ValueCount => GroupState::Values(HashMap::new()),
                Kind::Temporal | Kind::TemporalOrdered => {
                    GroupState::Times(vec![None; self.refs.len()])
                }
            });
        let count = match group {
            GroupState::Count(q) => {
                q.push_back(t);
                while q.front().is_some_and(|&f| f <= since && f != t) {
                    q.pop_front();
                }
                while q.len() > self.window_cap {
                    q.pop_front();
                }
                let n = q.len() as u64;
                self.holds(n).then_some(n)
            }
            GroupState::Values(m) => {
                let acc = self.value_field.get(k).copied().flatten()?;
                let mut value: Option<Box<str>> = None;
                any_value(acc, e, |v| {
                    value = Some(with_text(v, |t| String::from_utf8_lossy(t).into()));
                    true
                });
                let value = value?;
                m.retain(|_, &mut seen| seen > since || seen == t);
                if m.len() < MAX_VALUES || m.contains_key(&value) {
                    m.insert(value, t);
                }
                let n = m.len() as u64;
                self.holds(n).then_some(n)
            }
            GroupState::Times(times) => {
                if self.kind == Kind::TemporalOrdered {
                    let step = if k == 0 {
                        Some(t)
                    } else {
                        times
                            .get(k - 1)
                            .copied()
                            .flatten()
                            .filter(|&start| t.saturating_sub(start) <= self.span_ns)
                    };
                    if let (Some(start), Some(slot)) = (step, times.get_mut(k)) {
                        *slot = Some(start);
                    }
                    (k + 1 == self.refs.len() && step.is_some()).then_some(self.refs.len() as u64)
                } else {
                    if let Some(slot) = times.get_mut(k) {
                        *slot = Some(t);
                    }
                    let live: Vec<bool> = times
                        .iter()
                        .map(|x| x.is_some_and(|s| s > since || s == t))
                        .collect();
                    let ok = match &self.extended {
                        Some(expr) => eval_names(expr, &self.ref_names, &live),
                        None => live.iter().all(|&b| b),
                    };
                    ok.then(|| live.iter().filter(|&&b| b).count() as u64)
                }
            }
        };
        let count = count?;
        state.groups.pop(&key);
        Some(Firing {
            correlation: index,
            group: self
                .group_names
                .iter()
                .cloned()
                .zip(key.iter().map(|s| s.to_string()))
                .collect(),
            count,
        })
    }

    fn holds(&self, n: u64) -> bool {
        !self.predicates.is_empty()
            && self.predicates.iter().all(|(op, v)| match op {
                ConditionOperator::Lt => n < *v,
                ConditionOperator::Lte => n <= *v,
                ConditionOperator::Gt => n > *v,
                ConditionOperator::Gte => n >= *v,
                ConditionOperator::Eq => n == *v,
                ConditionOperator::Neq => n != *v,
            })
    }
}

fn eval_names(expr: &ConditionExpr, names: &[String], live: &[bool]) -> bool {
    let get = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .and_then(|i| live.get(i).copied())
            .unwrap_or(false)
    };
    match expr {
        ConditionExpr::And(xs) => xs.iter().all(|x| eval_names(x, names, live)),
        ConditionExpr::Or(xs) => xs.iter().any(|x| eval_names(x, names, live)),
        ConditionExpr::Not(x) => !eval_names(x, names, live),
        ConditionExpr::Identifier(n) => get(n),
        ConditionExpr::Selector { pattern, .. } => names
            .iter()
            .zip(live)
            .any(|(n, &l)| l && pattern_matches(pattern, n)),
    }
}

fn pattern_matches(p: &SelectorPattern, name: &str) -> bool {
    p.matches_detection_name(name)
}

/// Compiles the correlations once every detection rule is known. Marks rules used only by
/// correlations as not generating findings (unless `generate: true`).
pub(crate) fn compile(
    pending: Vec<PendingCorrelation<'_>>,
    rules: &mut [Rule],
    families: &[Family],
    mode: Mode,
) -> (Vec<Correlation>, Vec<Refusal>) {
    let mut refusals = Vec::new();
    // Names and ids of everything referable.
    let mut by_name: HashMap<String, Target> = HashMap::new();
    for (i, r) in rules.iter().enumerate() {
        by_name.insert(r.meta.id.clone(), Target::Rule(i));
        if let Some(n) = &r.meta.name {
            by_name.insert(n.clone(), Target::Rule(i));
        }
    }
    for (i, p) in pending.iter().enumerate() {
        if let Some(id) = &p.rule.id {
            by_name.insert(id.clone(), Target::Correlation(i));
        }
        if let Some(n) = &p.rule.name {
            by_name.insert(n.clone(), Target::Correlation(i));
        }
    }
    // First pass: resolve refs; a correlation with a missing ref is refused.
    let mut resolved: Vec<Option<Vec<Target>>> = Vec::with_capacity(pending.len());
    for p in &pending {
        let mut refs = Vec::new();
        let mut missing = None;
        for r in &p.rule.rules {
            match by_name.get(r) {
                Some(t) => refs.push(*t),
                None => missing = Some(r.clone()),
            }
        }
        if let Some(m) = missing {
            refusals.push(corr_refusal(
                p,
                locate::text_line(&p.doc, &m),
                format!("correlation refers to `{m}`, which is not a compiled rule (missing, or refused above)"),
            ));
            resolved.push(None);
        } else if refs.is_empty() {
            refusals.push(corr_refusal(p, None, "correlation names no rules".into()));
            resolved.push(None);
        } else {
            resolved.push(Some(refs));
        }
    }
    // A ref to a refused correlation, or a cycle, refuses the referrer (to a fixed point).
    let mut ok: Vec<bool> = resolved.iter().map(Option::is_some).collect();
    loop {
        let mut changed = false;
        for i in 0..pending.len() {
            if !ok[i] {
                continue;
            }
            let bad = resolved[i].iter().flatten().any(|t| match t {
                Target::Correlation(j) => !ok[*j] || reaches(&resolved, *j, i),
                Target::Rule(_) => false,
            });
            if bad {
                ok[i] = false;
                changed = true;
                refusals.push(corr_refusal(
                    &pending[i],
                    None,
                    "correlation depends on a refused or cyclic correlation".into(),
                ));
            }
        }
        if !changed {
            break;
        }
    }
    let family_of = |t: Target| first_family(t, &resolved, families);
    let kinds_of = |t: Target| target_kinds(t, &resolved, rules);
    let mut out: Vec<Option<Correlation>> = Vec::with_capacity(pending.len());
    for (i, p) in pending.iter().enumerate() {
        let Some(refs) = resolved[i].clone().filter(|_| ok[i]) else {
            out.push(None);
            continue;
        };
        match compile_one(p, refs, &family_of, &kinds_of, rules, i, mode) {
            Ok(c) => out.push(Some(c)),
            Err(r) => {
                refusals.push(*r);
                out.push(None);
            }
        }
    }
    // Renumber the compiled ones and drop correlations that reference refused ones.
    let mut new_index = vec![None; out.len()];
    let mut n = 0;
    for (i, c) in out.iter().enumerate() {
        if c.is_some() {
            new_index[i] = Some(n);
            n += 1;
        }
    }
    let mut compiled = Vec::new();
    for (i, c) in out.into_iter().enumerate() {
        let Some(mut c) = c else { continue };
        let mut dangling = false;
        for t in &mut c.refs {
            if let Target::Correlation(j) = t {
                match new_index.get(*j).copied().flatten() {
                    Some(k) => *j = k,
                    None => dangling = true,
                }
            }
        }
        if dangling {
            refusals.push(corr_refusal(
                &pending[i],
                None,
                "correlation depends on a correlation that was refused".into(),
            ));
            continue;
        }
        compiled.push(c);
    }
    // Rules and correlations used by a correlation generate findings only when asked to.
    let mut used_rules = vec![false; rules.len()];
    let mut used_corr = vec![false; compiled.len()];
    for c in &compiled {
        if pending_generate(c) {
            continue;
        }
        for t in &c.refs {
            match t {
                Target::Rule(r) => used_rules[*r] = true,
                Target::Correlation(j) => used_corr[*j] = true,
            }
        }
    }
    for (r, used) in rules.iter_mut().zip(used_rules) {
        if used {
            r.generate = false;
        }
    }
    for (c, used) in compiled.iter_mut().zip(used_corr) {
        if used {
            c.generate = false;
        }
    }
    (compiled, refusals)
}

fn pending_generate(c: &Correlation) -> bool {
    c.refs_generate
}

fn reaches(resolved: &[Option<Vec<Target>>], from: usize, to: usize) -> bool {
    let mut stack = vec![from];
    let mut seen = vec![false; resolved.len()];
    while let Some(i) = stack.pop() {
        if i == to {
            return true;
        }
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        for t in resolved[i].iter().flatten() {
            if let Target::Correlation(j) = t {
                stack.push(*j);
            }
        }
    }
    false
}

fn first_family(
    t: Target,
    resolved: &[Option<Vec<Target>>],
    families: &[Family],
) -> Option<Family> {
    let mut t = t;
    for _ in 0..64 {
        match t {
            Target::Rule(r) => return families.get(r).copied(),
            Target::Correlation(j) => t = *resolved.get(j)?.as_ref()?.first()?,
        }
    }
    None
}

fn target_kinds(t: Target, resolved: &[Option<Vec<Target>>], rules: &[Rule]) -> KindSet {
    let mut out = KindSet::EMPTY;
    let mut stack = vec![t];
    let mut steps = 0;
    while let Some(t) = stack.pop() {
        steps += 1;
        if steps > 1024 {
            break;
        }
        match t {
            Target::Rule(r) => {
                if let Some(rule) = rules.get(r) {
                    out = out.union(rule.kinds);
                }
            }
            Target::Correlation(j) => stack.extend(resolved.get(j).into_iter().flatten().flatten()),
        }
    }
    out
}

fn corr_refusal(p: &PendingCorrelation<'_>, line: Option<u32>, message: String) -> Refusal {
    Refusal {
        file: p.file.to_owned(),
        line: line.or(Some(p.doc.line)),
        rule_id: p.rule.id.clone(),
        title: Some(p.rule.title.clone()),
        field: None,
        message,
    }
}

fn compile_one(
    p: &PendingCorrelation<'_>,
    refs: Vec<Target>,
    family_of: &dyn Fn(Target) -> Option<Family>,
    kinds_of: &dyn Fn(Target) -> KindSet,
    rules: &[Rule],
    index: usize,
    mode: Mode,
) -> Result<Correlation, Box<Refusal>> {
    let r = &p.rule;
    let response = crate::response::parse(&r.custom_attributes).map_err(|why| {
        Box::new(corr_refusal(
            p,
            locate::key_line(&p.doc, crate::response::ATTRIBUTE),
            why,
        ))
    })?;
    let output = crate::rule::output_template(&r.custom_attributes).map_err(|why| {
        Box::new(corr_refusal(
            p,
            locate::key_line(&p.doc, crate::rule::OUTPUT_ATTRIBUTE),
            why,
        ))
    })?;
    let kind = match r.correlation_type {
        CorrelationType::EventCount => Kind::EventCount,
        CorrelationType::ValueCount => Kind::ValueCount,
        CorrelationType::Temporal => Kind::Temporal,
        CorrelationType::TemporalOrdered => Kind::TemporalOrdered,
        other => {
            return Err(Box::new(corr_refusal(
                p,
                locate::key_line(&p.doc, "type"),
                format!("correlation type `{}` is not supported", other.as_str()),
            )));
        }
    };
    let mut group_by = Vec::with_capacity(refs.len());
    let mut value_field = Vec::with_capacity(refs.len());
    let (predicates, field, extended) = match &r.condition {
        CorrelationCondition::Threshold {
            predicates, field, ..
        } => (predicates.clone(), field.clone(), None),
        CorrelationCondition::Extended(e) => (Vec::new(), None, Some(e.clone())),
    };
    if matches!(kind, Kind::EventCount | Kind::ValueCount) && predicates.is_empty() {
        return Err(Box::new(corr_refusal(
            p,
            locate::key_line(&p.doc, "condition"),
            "a count correlation needs a threshold condition (gte, gt, ...)".into(),
        )));
    }
    for (k, t) in refs.iter().enumerate() {
        let family = family_of(*t).ok_or_else(|| {
            corr_refusal(
                p,
                None,
                "cannot resolve the logsource of a referenced rule".into(),
            )
        })?;
        let ref_name = r.rules.get(k).cloned().unwrap_or_default();
        let mut accs = Vec::new();
        for g in &r.group_by {
            let name = alias_for(r, g, &ref_name, *t, rules).unwrap_or_else(|| g.clone());
            let acc = mapping::field(family, &name).map_err(|why| {
                let mut x =
                    corr_refusal(p, locate::text_line(&p.doc, g), format!("group-by: {why}"));
                x.field = Some(g.clone());
                Box::new(x)
            })?;
            if filled(acc, mode).intersect(kinds_of(*t)).is_empty() {
                let mut x = corr_refusal(
                    p,
                    locate::text_line(&p.doc, g),
                    format!(
                        "group-by `{g}` reads {}, which no source fills for the events of `{ref_name}`",
                        acc.describe()
                    ),
                );
                x.field = Some(g.clone());
                return Err(Box::new(x));
            }
            accs.push(acc);
        }
        group_by.push(accs);
        if kind == Kind::ValueCount {
            let Some(f) = field.as_ref().and_then(|f| f.first()) else {
                return Err(Box::new(corr_refusal(
                    p,
                    locate::key_line(&p.doc, "condition"),
                    "value_count needs `condition.field`".into(),
                )));
            };
            let acc = mapping::field(family, f).map_err(|why| {
                let mut x = corr_refusal(
                    p,
                    locate::text_line(&p.doc, f),
                    format!("value_count field: {why}"),
                );
                x.field = Some(f.clone());
                Box::new(x)
            })?;
            value_field.push(Some(acc));
        } else {
            value_field.push(None);
        }
    }
    let span_ns = i64::try_from(r.timespan.seconds)
        .unwrap_or(i64::MAX / 1_000_000_000)
        .saturating_mul(1_000_000_000);
    let window_cap = predicates
        .iter()
        .map(|(_, v)| usize::try_from(*v).unwrap_or(MAX_WINDOW).saturating_add(1))
        .max()
        .unwrap_or(1)
        .clamp(1, MAX_WINDOW);
    Ok(Correlation {
        meta: RuleMeta {
            id: r
                .id
                .clone()
                .unwrap_or_else(|| format!("{}#c{}", p.file, index + 1)),
            name: r.name.clone(),
            title: r.title.clone(),
            description: r.description.clone().unwrap_or_default(),
            level: r.level.map_or("medium", |l| l.as_str()).to_owned(),
            tags: r.tags.clone(),
            references: r.references.clone(),
            falsepositives: crate::rule::bounded_false_positives(&r.falsepositives),
            file: p.file.to_owned(),
            line: p.doc.line,
            response,
            output,
        },
        kind,
        refs,
        ref_names: r.rules.clone(),
        group_names: r.group_by.clone(),
        group_by,
        value_field,
        span_ns,
        predicates,
        extended,
        generate: true,
        refs_generate: r.generate,
        window_cap,
    })
}

fn alias_for(
    r: &rsigma_parser::CorrelationRule,
    group: &str,
    ref_name: &str,
    t: Target,
    rules: &[Rule],
) -> Option<String> {
    let alias = r.aliases.iter().find(|a| a.alias == group)?;
    if let Some(f) = alias.mapping.get(ref_name) {
        return Some(f.clone());
    }
    if let Target::Rule(i) = t {
        let rule = rules.get(i)?;
        for key in [Some(&rule.meta.id), rule.meta.name.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(f) = alias.mapping.get(key) {
                return Some(f.clone());
            }
        }
    }
    None
}
