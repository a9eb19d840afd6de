//! A compiled detection rule: its metadata, the event kinds it runs on, its detection items and
//! the condition tree over them. Evaluation borrows from the event and never allocates.

use ringfence_event::{Event, EventKind, KindSet};
use serde::Serialize;

use crate::access::{Val, any_value, with_text};
use crate::mapping::Accessor;
use crate::pattern::{AnyContains, Pattern};

/// What a finding says about the rule that made it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RuleMeta {
    /// The Sigma `id` (or `file#n` when a rule has none).
    pub id: String,
    /// The Sigma `name`, which correlations refer to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub title: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// informational, low, medium, high or critical.
    pub level: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// The Sigma `falsepositives`: what else makes the rule fire (at most
    /// [`MAX_FALSE_POSITIVES`] entries of [`MAX_FALSE_POSITIVE_CHARS`] characters each).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub falsepositives: Vec<String>,
    /// The rule file, as given to the compiler.
    pub file: String,
    /// Line of the rule's document in the file.
    pub line: u32,
    /// Actions the rule asks for when it fires (the `response` attribute).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub response: Vec<crate::response::ResponseKind>,
    /// The rule's `output` attribute: a one-line template (`%process.command_line`, …) for
    /// the finding's text form, as Falco rules have.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

/// Most `falsepositives` entries a finding carries.
pub const MAX_FALSE_POSITIVES: usize = 16;
/// Longest `falsepositives` entry a finding carries, in characters.
pub const MAX_FALSE_POSITIVE_CHARS: usize = 300;

/// A rule's `falsepositives`, bounded for findings: entries cut to
/// [`MAX_FALSE_POSITIVE_CHARS`], at most [`MAX_FALSE_POSITIVES`], empty and `Unknown` ones
/// (SigmaHQ's placeholder) left out.
pub fn bounded_false_positives(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && !s.eq_ignore_ascii_case("unknown"))
        .take(MAX_FALSE_POSITIVES)
        .map(|s| s.chars().take(MAX_FALSE_POSITIVE_CHARS).collect())
        .collect()
}

/// The custom attribute naming a rule's text template.
pub const OUTPUT_ATTRIBUTE: &str = "output";
/// The longest `output` template accepted.
pub const MAX_OUTPUT_TEMPLATE: usize = 1024;

/// The rule's `output` template, if it has one: a string of at most
/// [`MAX_OUTPUT_TEMPLATE`] bytes without control characters.
pub fn output_template(
    attributes: &std::collections::HashMap<String, yaml_serde::Value>,
) -> Result<Option<String>, String> {
    let Some(value) = attributes.get(OUTPUT_ATTRIBUTE) else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or_else(|| format!("{OUTPUT_ATTRIBUTE}: expected a string template"))?;
    if text.len() > MAX_OUTPUT_TEMPLATE {
        return Err(format!(
            "{OUTPUT_ATTRIBUTE}: {} bytes, at most {MAX_OUTPUT_TEMPLATE}",
            text.len()
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "{OUTPUT_ATTRIBUTE}: control characters are not allowed"
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A field test: an accessor and the values it is compared with.
#[derive(Debug, Clone)]
pub struct Item {
    pub accessor: Accessor,
    /// `|all`: every value must match (each may match a different list element).
    pub all: bool,
    /// Value patterns, OR-ed (AND-ed with `all`).
    pub values: Vec<Pattern>,
    /// `null`, `exists`, `fieldref` patterns, tested against the event rather than one value.
    pub presence: Vec<Pattern>,
    /// Substring values merged into one automaton (OR only), with their needles.
    pub merged: Option<(AnyContains, Vec<Vec<u8>>)>,
}

impl Item {
    /// The needles that decide this item when it is a plain "the field contains one of these"
    /// (ASCII case-insensitive, no `all`, no presence test): one scan of the field for all of
    /// them answers it, so the engine's prefilter pass can. Items with a needle shorter than
    /// the prefilter's minimum are left to their own matcher: `-` or `/` would make the shared
    /// scan report a match every few bytes; so are long lists, which would swell the shared
    /// automaton every event of the kind pays for.
    pub fn deciding_needles(&self) -> Option<Vec<&[u8]>> {
        if self.all || !self.presence.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        if let Some((m, needles)) = &self.merged {
            if m.cased() {
                return None;
            }
            out.extend(needles.iter().map(Vec::as_slice));
        }
        for v in &self.values {
            match v {
                Pattern::Contains {
                    needle,
                    cased: false,
                } => out.push(needle),
                _ => return None,
            }
        }
        (!out.is_empty() && out.len() <= MANY_NEEDLES && out.iter().all(|n| n.len() >= MIN_NEEDLE))
            .then_some(out)
    }

    #[inline]
    pub fn matches(&self, e: &Event) -> bool {
        if self.all {
            self.presence.iter().all(|p| presence(self.accessor, p, e))
                && self
                    .values
                    .iter()
                    .all(|p| any_value(self.accessor, e, |v| p.matches(v)) == Some(true))
        } else {
            if !self.values.is_empty() || self.merged.is_some() {
                let hit = any_value(self.accessor, e, |v| {
                    self.merged.as_ref().is_some_and(|(m, _)| m.matches(v))
                        || self.values.iter().any(|p| p.matches(v))
                });
                if hit == Some(true) {
                    return true;
                }
            }
            self.presence.iter().any(|p| presence(self.accessor, p, e))
        }
    }

    /// What this item answers on every event of `kind`, when the kind alone decides it: the
    /// audit record types and PATH name types an event kind stands for, and the `execve`
    /// syscall of an exec. `None` when the event's own values decide.
    pub fn constant_for(&self, kind: EventKind) -> Option<bool> {
        let kind_only = match self.accessor {
            Accessor::AuditType | Accessor::AuditNameType => true,
            Accessor::AuditSyscall => kind == EventKind::ProcessExec,
            Accessor::Field(_) | Accessor::Arg(_) | Accessor::Initiated => false,
        };
        // A field reference compares with another field, which the kind does not decide.
        fn refers_elsewhere(p: &Pattern) -> bool {
            match p {
                Pattern::FieldRef { .. } => true,
                Pattern::Not(inner) => refers_elsewhere(inner),
                _ => false,
            }
        }
        let self_contained = !self.presence.iter().any(refers_elsewhere);
        (kind_only && self_contained).then(|| {
            let probe = Event {
                kind: Some(kind),
                ..Event::default()
            };
            self.matches(&probe)
        })
    }
}

fn presence(acc: Accessor, p: &Pattern, e: &Event) -> bool {
    match p {
        Pattern::Null => any_value(acc, e, |v| with_text(v, |t| !t.is_empty())) != Some(true),
        Pattern::Not(inner) if matches!(**inner, Pattern::Null) => {
            any_value(acc, e, |v| with_text(v, |t| !t.is_empty())) == Some(true)
        }
        Pattern::Exists(want) => any_value(acc, e, |_| true).is_some() == *want,
        Pattern::FieldRef { other, cased } => field_equals(acc, *other, *cased, e),
        Pattern::Not(inner) => match &**inner {
            Pattern::FieldRef { other, cased } => {
                any_value(acc, e, |_| true).is_some() && !field_equals(acc, *other, *cased, e)
            }
            _ => false,
        },
        _ => false,
    }
}

fn field_equals(a: Accessor, b: Accessor, cased: bool, e: &Event) -> bool {
    any_value(a, e, |v: Val<'_>| {
        any_value(b, e, |w| {
            with_text(v, |x| {
                with_text(w, |y| {
                    if cased {
                        x == y
                    } else {
                        x.eq_ignore_ascii_case(y)
                    }
                })
            })
        }) == Some(true)
    }) == Some(true)
}

/// The condition tree over a rule's items.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Item(usize),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Const(bool),
}

impl Expr {
    #[inline]
    pub fn eval(&self, items: &[Item], e: &Event) -> bool {
        self.eval_by(&|i| items.get(i).is_some_and(|it| it.matches(e)))
    }

    /// Evaluates with `item` answering each item by index.
    #[inline]
    pub fn eval_by(&self, item: &dyn Fn(usize) -> bool) -> bool {
        match self {
            Expr::Item(i) => item(*i),
            Expr::And(xs) => xs.iter().all(|x| x.eval_by(item)),
            Expr::Or(xs) => xs.iter().any(|x| x.eval_by(item)),
            Expr::Not(x) => !x.eval_by(item),
            Expr::Const(b) => *b,
        }
    }

    /// This expression with the items `known` answers replaced by constants, then folded.
    pub fn specialize(&self, known: &dyn Fn(usize) -> Option<bool>) -> Expr {
        fn substitute(x: &Expr, known: &dyn Fn(usize) -> Option<bool>) -> Expr {
            match x {
                Expr::Item(i) => known(*i).map_or(Expr::Item(*i), Expr::Const),
                Expr::And(xs) => Expr::And(xs.iter().map(|x| substitute(x, known)).collect()),
                Expr::Or(xs) => Expr::Or(xs.iter().map(|x| substitute(x, known)).collect()),
                Expr::Not(x) => Expr::Not(Box::new(substitute(x, known))),
                Expr::Const(b) => Expr::Const(*b),
            }
        }
        substitute(self, known).fold()
    }

    /// Folds constants: `x and false` is false, `x or false` is x, `not true` is false.
    pub fn fold(self) -> Expr {
        match self {
            Expr::And(xs) => {
                let mut out = Vec::with_capacity(xs.len());
                for x in xs {
                    match x.fold() {
                        Expr::Const(false) => return Expr::Const(false),
                        Expr::Const(true) => {}
                        other => out.push(other),
                    }
                }
                match out.len() {
                    0 => Expr::Const(true),
                    1 => out.remove(0),
                    _ => Expr::And(out),
                }
            }
            Expr::Or(xs) => {
                let mut out = Vec::with_capacity(xs.len());
                for x in xs {
                    match x.fold() {
                        Expr::Const(true) => return Expr::Const(true),
                        Expr::Const(false) => {}
                        other => out.push(other),
                    }
                }
                match out.len() {
                    0 => Expr::Const(false),
                    1 => out.remove(0),
                    _ => Expr::Or(out),
                }
            }
            Expr::Not(x) => match x.fold() {
                Expr::Const(b) => Expr::Const(!b),
                other => Expr::Not(Box::new(other)),
            },
            other => other,
        }
    }

    /// Literals one of which every matching event holds, per accessor: the prefilter's
    /// needles. `None` when the rule can match without any literal.
    pub fn needles(&self, items: &[Item]) -> Option<Vec<(Accessor, Vec<u8>)>> {
        match self {
            Expr::Item(i) => items.get(*i).and_then(item_needles),
            // Any one branch's literals will do: prefer a short list (a thousand package names
            // would swell the shared automaton for every event), then long literals (short ones
            // occur often), then fewer.
            Expr::And(xs) => xs.iter().filter_map(|x| x.needles(items)).max_by_key(|n| {
                let shortest = n.iter().map(|(_, b)| b.len()).min().unwrap_or(0);
                (
                    n.len() <= MANY_NEEDLES,
                    shortest.min(8),
                    std::cmp::Reverse(n.len()),
                )
            }),
            Expr::Or(xs) => {
                let mut out = Vec::new();
                for x in xs {
                    out.extend(x.needles(items)?);
                }
                Some(out)
            }
            Expr::Not(_) | Expr::Const(_) => None,
        }
    }
}

/// Needles are only worth it at this length: shorter ones match too often.
const MIN_NEEDLE: usize = 3;

/// More literals than this make a list the shared prefilter should not carry when a shorter
/// one will do: an item this long is decided by its own automaton, and only on candidates.
const MANY_NEEDLES: usize = 64;

fn item_needles(item: &Item) -> Option<Vec<(Accessor, Vec<u8>)>> {
    if !item.presence.is_empty() && !item.all {
        return None;
    }
    let lit = |p: &Pattern| {
        p.required_literal()
            .filter(|n| n.len() >= MIN_NEEDLE)
            .map(|n| (item.accessor, n.to_vec()))
    };
    if item.all {
        // One value's literal suffices: every value must be present.
        item.values
            .iter()
            .filter_map(lit)
            .max_by_key(|(_, n)| n.len())
            .map(|n| vec![n])
    } else {
        let merged = item
            .merged
            .as_ref()
            .map(|(_, n)| n.as_slice())
            .unwrap_or(&[]);
        if item.values.is_empty() && merged.is_empty() {
            return None;
        }
        let mut out: Vec<(Accessor, Vec<u8>)> =
            item.values.iter().map(lit).collect::<Option<_>>()?;
        for n in merged {
            if n.len() < MIN_NEEDLE {
                return None;
            }
            out.push((item.accessor, n.clone()));
        }
        Some(out)
    }
}

/// A compiled detection rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub meta: RuleMeta,
    /// Event kinds it runs on (in the compiled mode).
    pub kinds: KindSet,
    /// `service.name` values (lowercase) it is limited to; empty for any.
    pub services: &'static [&'static str],
    pub items: Vec<Item>,
    pub expr: Expr,
    /// Whether its matches are findings (false for rules only a correlation uses).
    pub generate: bool,
}

impl Rule {
    /// Whether the rule matches `e` (kind and service checked too).
    #[inline]
    pub fn matches(&self, e: &Event) -> bool {
        self.applies_to(e) && self.expr.eval(&self.items, e)
    }

    /// As [`Rule::matches`], with `decided` answering the items it knows (by item index) and
    /// the rest evaluated on the event.
    #[inline]
    pub fn matches_with(&self, e: &Event, decided: &dyn Fn(usize) -> Option<bool>) -> bool {
        self.matches_expr_with(&self.expr, e, decided)
    }

    /// As [`Rule::matches_with`] for `expr`, the rule's condition as specialized for the
    /// event's kind (see [`Rule::specialized_for`]).
    #[inline]
    pub fn matches_expr_with(
        &self,
        expr: &Expr,
        e: &Event,
        decided: &dyn Fn(usize) -> Option<bool>,
    ) -> bool {
        self.applies_to(e)
            && expr.eval_by(&|i| {
                decided(i).unwrap_or_else(|| self.items.get(i).is_some_and(|it| it.matches(e)))
            })
    }

    /// The rule's condition on events of `kind`: the items the kind alone decides (an audit
    /// rule's `type: EXECVE`) folded away, so the prefilter picks a literal that tells events
    /// of the kind apart and the evaluation skips what is already known.
    pub fn specialized_for(&self, kind: EventKind) -> Expr {
        self.expr
            .specialize(&|i| self.items.get(i).and_then(|it| it.constant_for(kind)))
    }

    /// Whether `e`'s kind and service are ones the rule runs on.
    #[inline]
    fn applies_to(&self, e: &Event) -> bool {
        let Some(kind) = e.kind else { return false };
        if !self.kinds.contains(kind) {
            return false;
        }
        if !self.services.is_empty() {
            let Some(service) = e.service_name.as_deref() else {
                return false;
            };
            if !self
                .services
                .iter()
                .any(|s| s.eq_ignore_ascii_case(service))
            {
                return false;
            }
        }
        true
    }
}
