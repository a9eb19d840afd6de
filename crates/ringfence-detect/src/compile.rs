//! Sigma documents to compiled rules, checked against the field schema for one sensor mode.
//!
//! Every refusal names the file, line, rule id and field. A rule whose logsource no source
//! provides in the mode, or whose field no source fills for the rule's event kinds, is refused:
//! it never sits loaded and silently never matching. One bad rule never stops the others.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ringfence_event::{EventKind, Field, KindSet, Mode};
use rsigma_parser::{
    ConditionExpr, CorrelationRule, Detection, DetectionItem, Modifier, Quantifier, SigmaRule,
    parse_sigma_yaml,
};
use serde::Serialize;

use crate::correlation;
use crate::engine::Engine;
use crate::locate::{self, Doc};
use crate::mapping::{self, AUDIT_TYPES, Accessor, Family};
use crate::overrides::{self, Override};
use crate::pattern::{AnyContains, Pattern, ValueContext, compile_value, modifier_name};
use crate::rule::{Expr, Item, Rule, RuleMeta};

/// Rule files bigger than this are refused unread.
pub const MAX_RULE_FILE_BYTES: usize = 1 << 20;
/// Deepest YAML nesting accepted (brackets or indentation levels).
const MAX_NESTING: usize = 64;
/// Detection items one rule may hold.
const MAX_ITEMS: usize = 4096;

/// One rule file.
#[derive(Debug, Clone, Copy)]
pub struct RuleFile<'a> {
    /// Shown in refusals and findings (a path, or a bundle entry name).
    pub path: &'a str,
    pub text: &'a str,
}

/// How to compile.
#[derive(Debug, Clone)]
pub struct Options {
    /// The sensor mode whose field schema the rules are checked against.
    pub mode: Mode,
    /// `expand` placeholders.
    pub values: ValueContext,
}

impl Options {
    pub fn new(mode: Mode) -> Options {
        Options {
            mode,
            values: ValueContext::default(),
        }
    }
}

/// A rule the compiler would not load, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub file: String,
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(id) = &self.rule_id {
            write!(f, ": rule {id}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of compiling a set of files.
#[derive(Debug)]
pub struct Compiled {
    pub engine: Engine,
    pub refusals: Vec<Refusal>,
    /// Documents seen (detection rules and correlations, compiled or not).
    pub documents: usize,
}

/// A rule document waiting for its correlation pass.
pub(crate) struct PendingCorrelation<'a> {
    pub rule: CorrelationRule,
    pub doc: Doc<'a>,
    pub file: &'a str,
}

/// Compiles every rule in `files` for `opts.mode`.
pub fn compile(files: &[RuleFile<'_>], opts: &Options) -> Compiled {
    let mut rules: Vec<Rule> = Vec::new();
    let mut families: Vec<Family> = Vec::new();
    let mut pending: Vec<PendingCorrelation<'_>> = Vec::new();
    let mut refusals = Vec::new();
    let mut documents = 0usize;
    let mut level_overrides: Vec<Override> = Vec::new();
    let mut override_refusals = Vec::new();
    for file in files {
        if file.text.len() > MAX_RULE_FILE_BYTES {
            refusals.push(refusal(
                file.path,
                None,
                None,
                None,
                format!(
                    "file of {} bytes is over the {MAX_RULE_FILE_BYTES}-byte limit",
                    file.text.len()
                ),
            ));
            continue;
        }
        for doc in locate::documents(file.text) {
            if let Some((line, why)) = locate::too_deep(&doc, MAX_NESTING) {
                documents += 1;
                refusals.push(refusal(file.path, Some(line), doc_id(&doc), None, why));
                continue;
            }
            if overrides::is_overrides(&doc) {
                let (mut found, mut errs) = overrides::parse(&doc, file.path);
                level_overrides.append(&mut found);
                override_refusals.append(&mut errs);
                continue;
            }
            let parsed = catch_unwind(AssertUnwindSafe(|| parse_sigma_yaml(doc.text)));
            let collection = match parsed {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    documents += 1;
                    let msg = e.to_string();
                    refusals.push(refusal(
                        file.path,
                        Some(locate::parser_line(&doc, &msg).unwrap_or(doc.line)),
                        None,
                        None,
                        msg,
                    ));
                    continue;
                }
                Err(_) => {
                    documents += 1;
                    refusals.push(refusal(
                        file.path,
                        Some(doc.line),
                        None,
                        None,
                        "the Sigma parser failed on this document".into(),
                    ));
                    continue;
                }
            };
            for msg in &collection.errors {
                documents += 1;
                let line = locate::parser_line(&doc, msg)
                    .or_else(|| unknown_modifier_line(&doc, msg))
                    .unwrap_or(doc.line);
                let id = doc_id(&doc);
                refusals.push(refusal(file.path, Some(line), id, None, msg.clone()));
            }
            for f in &collection.filters {
                documents += 1;
                refusals.push(refusal(
                    file.path,
                    Some(doc.line),
                    f.id.clone(),
                    Some(f.title.clone()),
                    "Sigma filter documents are not supported yet".into(),
                ));
            }
            for rule in collection.rules {
                documents += 1;
                let index = rules.len();
                match compile_rule(&rule, &doc, file.path, opts, index) {
                    Ok((r, family)) => {
                        rules.push(r);
                        families.push(family);
                    }
                    Err(mut errs) => refusals.append(&mut errs),
                }
            }
            for rule in collection.correlations {
                documents += 1;
                pending.push(PendingCorrelation {
                    rule,
                    doc,
                    file: file.path,
                });
            }
        }
    }
    // A rule id names one rule: a later duplicate is refused (findings and tests key on ids).
    let mut seen: std::collections::HashMap<String, (String, u32)> =
        std::collections::HashMap::new();
    let mut keep = Vec::with_capacity(rules.len());
    for r in &rules {
        match seen.get(&r.meta.id) {
            Some((file, line)) => {
                refusals.push(Refusal {
                    file: r.meta.file.clone(),
                    line: Some(r.meta.line),
                    rule_id: Some(r.meta.id.clone()),
                    title: Some(r.meta.title.clone()),
                    field: None,
                    message: format!("duplicate rule id: already used by {file}:{line}"),
                });
                keep.push(false);
            }
            None => {
                seen.insert(r.meta.id.clone(), (r.meta.file.clone(), r.meta.line));
                keep.push(true);
            }
        }
    }
    if keep.iter().any(|k| !k) {
        let mut k = keep.iter();
        rules.retain(|_| k.next().copied().unwrap_or(true));
        let mut k = keep.iter();
        families.retain(|_| k.next().copied().unwrap_or(true));
    }
    for p in &pending {
        if let Some(id) = &p.rule.id
            && let Some((file, line)) = seen.get(id)
        {
            refusals.push(Refusal {
                file: p.file.to_owned(),
                line: Some(p.doc.line),
                rule_id: Some(id.clone()),
                title: Some(p.rule.title.clone()),
                field: None,
                message: format!("duplicate rule id: already used by {file}:{line}"),
            });
        }
    }
    pending.retain(|p| p.rule.id.as_ref().is_none_or(|id| !seen.contains_key(id)));
    // Every rule id of the set, compiled or refused in this mode, for the overrides' check.
    let known: std::collections::HashSet<String> = rules
        .iter()
        .map(|r| r.meta.id.clone())
        .chain(pending.iter().filter_map(|p| p.rule.id.clone()))
        .chain(refusals.iter().filter_map(|r| r.rule_id.clone()))
        .collect();
    let (mut correlations, mut errs) =
        correlation::compile(pending, &mut rules, &families, opts.mode);
    refusals.append(&mut errs);
    refusals.append(&mut override_refusals);
    let mut errs = overrides::apply(&level_overrides, &mut rules, &mut correlations, &known);
    refusals.append(&mut errs);
    Compiled {
        engine: Engine::new(rules, correlations),
        refusals,
        documents,
    }
}

fn doc_id(doc: &Doc<'_>) -> Option<String> {
    doc.text.lines().find_map(|l| {
        l.strip_prefix("id:")
            .map(|v| v.trim().trim_matches(['\'', '"']).to_owned())
    })
}

fn unknown_modifier_line(doc: &Doc<'_>, msg: &str) -> Option<u32> {
    let name = msg.split('\'').nth(1)?;
    locate::text_line(doc, &format!("|{name}"))
}

pub(crate) fn refusal(
    file: &str,
    line: Option<u32>,
    rule_id: Option<String>,
    title: Option<String>,
    message: String,
) -> Refusal {
    Refusal {
        file: file.to_owned(),
        line,
        rule_id,
        title,
        field: None,
        message,
    }
}

/// The metadata of a detection rule.
fn meta(rule: &SigmaRule, doc: &Doc<'_>, file: &str, index: usize) -> RuleMeta {
    RuleMeta {
        id: rule
            .id
            .clone()
            .unwrap_or_else(|| format!("{file}#{}", index + 1)),
        name: rule.name.clone(),
        title: rule.title.clone(),
        description: rule.description.clone().unwrap_or_default(),
        level: rule.level.map_or("medium", |l| l.as_str()).to_owned(),
        tags: rule.tags.clone(),
        references: rule.references.clone(),
        falsepositives: crate::rule::bounded_false_positives(&rule.falsepositives),
        file: file.to_owned(),
        line: doc.line,
        response: Vec::new(),
        output: None,
    }
}

/// Which kinds `acc` has a value for in `mode`.
pub(crate) fn filled(acc: Accessor, mode: Mode) -> KindSet {
    match acc {
        Accessor::AuditSyscall => Field::Syscall
            .spec()
            .filled_in(mode)
            .union(KindSet::of(&[EventKind::ProcessExec])),
        Accessor::AuditType => Field::EventAction.spec().filled_in(mode),
        other => other.backing_field().spec().filled_in(mode),
    }
}

/// The kinds `mode` emits at all.
pub(crate) fn emitted(mode: Mode) -> KindSet {
    Field::EventAction.spec().filled_in(mode)
}

struct RuleCx<'a, 'd> {
    doc: &'a Doc<'d>,
    file: &'a str,
    id: String,
    title: String,
    family: Family,
    kinds: KindSet,
    logsource: String,
    opts: &'a Options,
    items: Vec<Item>,
    errors: Vec<Refusal>,
    /// Why parts of the rule can never match (reported; fatal if the whole rule is dead).
    dead: Vec<String>,
}

impl RuleCx<'_, '_> {
    fn error(&mut self, field: Option<&str>, message: String) {
        let line = field
            .and_then(|f| locate::key_line(self.doc, f))
            .unwrap_or(self.doc.line);
        self.errors.push(Refusal {
            file: self.file.to_owned(),
            line: Some(line),
            rule_id: Some(self.id.clone()),
            title: Some(self.title.clone()),
            field: field.map(str::to_owned),
            message,
        });
    }

    fn accessor(&mut self, name: Option<&str>) -> Option<Accessor> {
        let mapped = match name {
            Some(n) if !n.is_empty() => mapping::field(self.family, n),
            _ => mapping::keywords(self.family),
        };
        let shown = name.filter(|n| !n.is_empty()).unwrap_or("keywords");
        let acc = match mapped {
            Ok(a) => a,
            Err(why) => {
                self.error(name, format!("{why} ({})", self.logsource));
                return None;
            }
        };
        if filled(acc, self.opts.mode).intersect(self.kinds).is_empty() {
            self.error(
                name,
                format!(
                    "`{shown}` reads {}, which no {} source fills for {} events",
                    acc.describe(),
                    self.opts.mode.as_str(),
                    kinds_text(self.kinds)
                ),
            );
            return None;
        }
        Some(acc)
    }

    fn item(&mut self, it: &DetectionItem) -> Option<Expr> {
        let name = it.field.name.as_deref();
        let acc = self.accessor(name)?;
        let keyword = name.is_none_or(str::is_empty);
        let mut modifiers = it.field.modifiers.clone();
        if keyword
            && !modifiers.iter().any(|m| {
                matches!(
                    m,
                    Modifier::Contains | Modifier::StartsWith | Modifier::EndsWith | Modifier::Re
                )
            })
        {
            // Keywords are a full-text search.
            modifiers.push(Modifier::Contains);
        }
        let all = modifiers.contains(&Modifier::All);
        let mut item_values = it.values.clone();
        if acc == Accessor::AuditType && !all {
            // Record types Ringfence never sees can never match: drop them, and say so.
            let (seen, unseen): (Vec<_>, Vec<_>) = item_values.into_iter().partition(|v| {
                let t = v.to_string();
                AUDIT_TYPES.iter().any(|k| k.eq_ignore_ascii_case(&t))
            });
            for v in &unseen {
                self.dead.push(format!(
                    "audit record type `{v}` is not observed by Ringfence (it sees {})",
                    AUDIT_TYPES.join(", ")
                ));
            }
            if seen.is_empty() {
                return Some(Expr::Const(false));
            }
            item_values = seen;
        }
        let family = self.family;
        let resolve = |n: &str| mapping::field(family, n);
        let mut values = Vec::new();
        let mut presence = Vec::new();
        for v in &item_values {
            match compile_value(v, &modifiers, &self.opts.values, &resolve) {
                Ok(ps) => {
                    for p in ps {
                        match &p {
                            Pattern::Null | Pattern::Exists(_) | Pattern::FieldRef { .. } => {
                                presence.push(p)
                            }
                            Pattern::Not(inner)
                                if matches!(**inner, Pattern::Null | Pattern::FieldRef { .. }) =>
                            {
                                presence.push(p)
                            }
                            _ => values.push(p),
                        }
                    }
                }
                Err(why) => {
                    let shown = name.unwrap_or("keywords");
                    let mods: Vec<String> = modifiers.iter().map(|m| modifier_name(*m)).collect();
                    self.error(name, format!("`{shown}|{}`: {why}", mods.join("|")));
                    return None;
                }
            }
        }
        if let Some(Pattern::FieldRef { other, .. }) = presence
            .iter()
            .find(|p| matches!(p, Pattern::FieldRef { .. }))
            && filled(*other, self.opts.mode)
                .intersect(self.kinds)
                .is_empty()
        {
            self.error(
                name,
                format!(
                    "fieldref to {}, which no {} source fills",
                    other.describe(),
                    self.opts.mode.as_str()
                ),
            );
            return None;
        }
        if let Err(why) = values
            .iter()
            .chain(&presence)
            .try_for_each(|p| type_check(acc, p))
        {
            self.error(
                name,
                format!("wrong value type for {}: {why}", acc.describe()),
            );
            return None;
        }
        let merged = if all {
            None
        } else {
            merge_contains(&mut values)
        };
        if self.items.len() >= MAX_ITEMS {
            self.error(name, format!("more than {MAX_ITEMS} detection items"));
            return None;
        }
        self.items.push(Item {
            accessor: acc,
            all,
            values,
            presence,
            merged,
        });
        Some(Expr::Item(self.items.len() - 1))
    }

    /// Compiles every detection of a list, reporting each one that fails; `None` if any did.
    fn detections(&mut self, ds: &[Detection]) -> Option<Vec<Expr>> {
        let mut out = Vec::with_capacity(ds.len());
        let mut ok = true;
        for d in ds {
            match self.detection(d) {
                Some(e) => out.push(e),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn detection(&mut self, d: &Detection) -> Option<Expr> {
        match d {
            Detection::AllOf(items) => {
                self.check_syscall_args(items)?;
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for it in items {
                    match self.item(it) {
                        Some(e) => out.push(e),
                        None => ok = false,
                    }
                }
                ok.then(|| {
                    if out.len() == 1 {
                        out.remove(0)
                    } else {
                        Expr::And(out)
                    }
                })
            }
            Detection::AnyOf(ds) => self.detections(ds).map(Expr::Or),
            Detection::And(ds) => self.detections(ds).map(Expr::And),
            Detection::Keywords(values) => {
                let item = DetectionItem {
                    field: rsigma_parser::FieldSpec::new(None, Vec::new()),
                    values: values.clone(),
                };
                self.item(&item)
            }
            Detection::ArrayMatch { field, .. } => {
                self.error(
                    Some(field),
                    "array object-scope matching (`field[any]:`) is not supported".into(),
                );
                None
            }
            Detection::Conditional { .. } => {
                self.error(
                    None,
                    "array object-scope conditions are not supported".into(),
                );
                None
            }
        }
    }

    /// `a0`… of a SYSCALL record are raw syscall arguments, not exec arguments.
    fn check_syscall_args(&mut self, items: &[DetectionItem]) -> Option<()> {
        if self.family != Family::Auditd {
            return Some(());
        }
        let name = |it: &DetectionItem| it.field.name.clone().unwrap_or_default();
        let syscall_only = items.iter().any(|it| {
            name(it) == "type"
                && !it.values.is_empty()
                && it
                    .values
                    .iter()
                    .all(|v| v.to_string().eq_ignore_ascii_case("SYSCALL"))
        });
        if !syscall_only {
            return Some(());
        }
        if let Some(arg) = items.iter().map(name).find(|n| {
            n.strip_prefix('a')
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        }) {
            self.error(
                Some(&arg),
                format!("`{arg}` of a SYSCALL record is a raw system call argument, which Ringfence events do not carry"),
            );
            return None;
        }
        Some(())
    }
}

/// Refuses values that can never compare with the field's type (a word for a port, a range for
/// a name, a number comparison on text).
fn type_check(acc: Accessor, p: &Pattern) -> Result<(), String> {
    use ringfence_event::FieldType as T;
    let ty = match acc {
        Accessor::Field(f) => f.ty(),
        Accessor::Initiated => T::Boolean,
        _ => T::Keyword,
    };
    let text = |n: &[u8]| String::from_utf8_lossy(n).into_owned();
    match (ty, p) {
        (T::Long | T::LongList, Pattern::Exact { needle, .. })
            if text(needle).trim().parse::<i64>().is_err() =>
        {
            return Err(format!("`{}` is not an integer", text(needle)));
        }
        (T::Ip, Pattern::Exact { needle, .. })
            if text(needle).trim().parse::<std::net::IpAddr>().is_err() =>
        {
            return Err(format!("`{}` is not an IP address", text(needle)));
        }
        (T::Boolean, Pattern::Exact { needle, .. }) => {
            let t = text(needle).to_ascii_lowercase();
            if t != "true" && t != "false" {
                return Err(format!("`{t}` is not true or false"));
            }
        }
        (T::Boolean, Pattern::Number { .. }) | (T::Ip, Pattern::Number { .. }) => {
            return Err("a number".into());
        }
        (T::Long | T::LongList | T::Boolean | T::Date, Pattern::Cidr(_)) => {
            return Err("`cidr` needs an address field".into());
        }
        (T::Ip | T::Boolean | T::Keyword | T::KeywordList, Pattern::Compare { .. }) => {
            return Err("`lt`/`lte`/`gt`/`gte` need a numeric field".into());
        }
        (_, Pattern::Not(inner)) => return type_check(acc, inner),
        _ => {}
    }
    Ok(())
}

fn kinds_text(kinds: KindSet) -> String {
    let names: Vec<&str> = kinds.iter().map(EventKind::action).collect();
    names.join("/")
}

/// Several substring values of one item become one automaton.
fn merge_contains(values: &mut Vec<Pattern>) -> Option<(AnyContains, Vec<Vec<u8>>)> {
    for cased in [false, true] {
        let idx: Vec<usize> = values
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Pattern::Contains { cased: c, .. } if *c == cased))
            .map(|(i, _)| i)
            .collect();
        if idx.len() < 3 {
            continue;
        }
        let needles: Vec<Vec<u8>> = idx
            .iter()
            .filter_map(|&i| {
                values
                    .get(i)
                    .and_then(Pattern::required_literal)
                    .map(<[u8]>::to_vec)
            })
            .collect();
        let refs: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
        let Ok(ac) = AnyContains::new(&refs, cased) else {
            continue;
        };
        for &i in idx.iter().rev() {
            values.remove(i);
        }
        return Some((ac, needles));
    }
    None
}

fn compile_rule(
    rule: &SigmaRule,
    doc: &Doc<'_>,
    file: &str,
    opts: &Options,
    index: usize,
) -> Result<(Rule, Family), Vec<Refusal>> {
    let mut meta = meta(rule, doc, file, index);
    let fail = |field: Option<&str>, line: Option<u32>, message: String| {
        vec![Refusal {
            file: file.to_owned(),
            line: line.or(Some(doc.line)),
            rule_id: Some(meta.id.clone()),
            title: Some(meta.title.clone()),
            field: field.map(str::to_owned),
            message,
        }]
    };
    let source = match mapping::resolve(&rule.logsource) {
        Ok(s) => s,
        Err(why) => return Err(fail(None, locate::key_line(doc, "logsource"), why)),
    };
    let response = crate::response::parse(&rule.custom_attributes)
        .map_err(|why| fail(None, locate::key_line(doc, crate::response::ATTRIBUTE), why))?;
    let output = crate::rule::output_template(&rule.custom_attributes).map_err(|why| {
        fail(
            None,
            locate::key_line(doc, crate::rule::OUTPUT_ATTRIBUTE),
            why,
        )
    })?;
    let kinds = source.kinds.intersect(emitted(opts.mode));
    let logsource = mapping::describe(&rule.logsource);
    if kinds.is_empty() {
        return Err(fail(
            None,
            locate::key_line(doc, "logsource"),
            format!(
                "logsource {logsource}: no {} source emits {} events",
                opts.mode.as_str(),
                kinds_text(source.kinds)
            ),
        ));
    }
    let mut cx = RuleCx {
        doc,
        file,
        id: meta.id.clone(),
        title: meta.title.clone(),
        family: source.family,
        kinds,
        logsource,
        opts,
        items: Vec::new(),
        errors: Vec::new(),
        dead: Vec::new(),
    };
    let mut named: BTreeMap<&str, Expr> = BTreeMap::new();
    let mut bad = false;
    let mut names: Vec<&String> = rule.detection.named.keys().collect();
    names.sort();
    for name in names {
        let Some(d) = rule.detection.named.get(name) else {
            continue;
        };
        match cx.detection(d) {
            Some(e) => {
                named.insert(name.as_str(), e);
            }
            None => bad = true,
        }
    }
    if bad || !cx.errors.is_empty() {
        if cx.errors.is_empty() {
            cx.error(None, "a detection could not be compiled".into());
        }
        return Err(cx.errors);
    }
    let mut conditions = Vec::new();
    for c in &rule.detection.conditions {
        match condition(c, &named) {
            Ok(e) => conditions.push(e),
            Err(why) => {
                return Err(fail(None, locate::key_line(doc, "condition"), why));
            }
        }
    }
    let expr = match conditions.len() {
        0 => return Err(fail(None, None, "the rule has no condition".into())),
        1 => conditions.remove(0),
        _ => Expr::Or(conditions),
    }
    .fold();
    if let Expr::Const(b) = expr {
        let why = if cx.dead.is_empty() {
            String::new()
        } else {
            format!(": {}", cx.dead.join("; "))
        };
        return Err(fail(
            None,
            locate::key_line(doc, "condition"),
            format!("the condition is always {b}{why}"),
        ));
    }
    meta.response = response;
    meta.output = output;
    Ok((
        Rule {
            meta,
            kinds,
            services: source.services,
            items: cx.items,
            expr,
            generate: true,
        },
        source.family,
    ))
}

fn condition(c: &ConditionExpr, named: &BTreeMap<&str, Expr>) -> Result<Expr, String> {
    Ok(match c {
        ConditionExpr::And(xs) => Expr::And(
            xs.iter()
                .map(|x| condition(x, named))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Or(xs) => Expr::Or(
            xs.iter()
                .map(|x| condition(x, named))
                .collect::<Result<_, _>>()?,
        ),
        ConditionExpr::Not(x) => Expr::Not(Box::new(condition(x, named)?)),
        ConditionExpr::Identifier(id) => named.get(id.as_str()).cloned().ok_or_else(|| {
            format!("condition names `{id}`, which the detection does not define")
        })?,
        ConditionExpr::Selector {
            quantifier,
            pattern,
        } => {
            let hits: Vec<Expr> = named
                .iter()
                .filter(|(n, _)| pattern.matches_detection_name(n))
                .map(|(_, e)| e.clone())
                .collect();
            if hits.is_empty() {
                return Err(format!("`{quantifier} of {pattern}` matches no detection"));
            }
            match quantifier {
                Quantifier::Any | Quantifier::Count(1) => Expr::Or(hits),
                Quantifier::All => Expr::And(hits),
                Quantifier::Count(n) => {
                    return Err(format!(
                        "`{n} of ...` is not supported (only `1 of` and `all of`)"
                    ));
                }
            }
        }
    })
}
