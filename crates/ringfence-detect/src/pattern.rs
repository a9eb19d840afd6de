//! One Sigma value with its modifiers compiled into a matcher over bytes: exact, prefix,
//! suffix and substring tests (ASCII case-insensitive unless `cased`), globs and `re` on the
//! `regex` crate with size limits (linear time), CIDR sets, numeric comparisons, `exists`,
//! `null` and `fieldref`.

use std::collections::HashMap;
use std::net::IpAddr;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use base64::Engine as _;
use ipnet::IpNet;
use regex::bytes::{Regex, RegexBuilder};
use rsigma_parser::{Modifier, SigmaValue, SpecialChar, StringPart};

use crate::access::{Val, as_ip, as_number, with_text};
use crate::literal;
use crate::mapping::Accessor;

/// Compiled regexes may use at most this much memory each.
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// The longest value (after expansion and encoding) a rule may carry.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;

/// A value matcher.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// The whole text equals the needle.
    Exact {
        needle: Box<[u8]>,
        cased: bool,
    },
    Prefix {
        needle: Box<[u8]>,
        cased: bool,
    },
    Suffix {
        needle: Box<[u8]>,
        cased: bool,
    },
    Contains {
        needle: Box<[u8]>,
        cased: bool,
    },
    /// A number written as a number: equal as numbers, or as text against text fields.
    Number {
        value: f64,
        text: Box<[u8]>,
    },
    /// Any value at all (`*`).
    Any,
    /// Wildcards elsewhere than at the ends, or `re`; with the literal (ASCII-lowercased)
    /// every match contains, when there is one.
    Regex {
        re: Regex,
        literal: Option<Box<[u8]>>,
        /// The text every match starts with (a glob's leading literal; `None` for `re`).
        prefix: Option<Box<[u8]>>,
    },
    Cidr(Vec<IpNet>),
    Compare {
        op: Cmp,
        value: f64,
    },
    Bool(bool),
    /// `field: null`: absent or empty.
    Null,
    /// `field|exists: true|false`.
    Exists(bool),
    /// `field|fieldref: other`: equal to another field's value.
    FieldRef {
        other: Accessor,
        cased: bool,
    },
    /// `neq`: present and not matching.
    Not(Box<Pattern>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Pattern {
    /// Whether the pattern is about presence rather than a value (`null`, `exists`).
    pub fn is_presence(&self) -> bool {
        matches!(self, Pattern::Null | Pattern::Exists(_))
    }

    /// Tests one value. Presence patterns and `fieldref` are handled by the caller.
    #[inline]
    pub fn matches(&self, v: Val<'_>) -> bool {
        match self {
            Pattern::Exact { needle, cased } => with_text(v, |t| eq(t, needle, *cased)),
            Pattern::Prefix { needle, cased } => with_text(v, |t| {
                t.len() >= needle.len() && eq(&t[..needle.len()], needle, *cased)
            }),
            Pattern::Suffix { needle, cased } => with_text(v, |t| {
                t.len() >= needle.len() && eq(&t[t.len() - needle.len()..], needle, *cased)
            }),
            Pattern::Contains { needle, cased } => with_text(v, |t| contains(t, needle, *cased)),
            Pattern::Number { value, text } => match v {
                Val::Int(i) => (i as f64) == *value,
                _ => with_text(v, |t| eq(t, text, false)),
            },
            Pattern::Any => true,
            Pattern::Regex { re, .. } => with_text(v, |t| re.is_match(t)),
            Pattern::Cidr(nets) => as_ip(v).is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
            Pattern::Compare { op, value } => as_number(v).is_some_and(|x| match op {
                Cmp::Lt => x < *value,
                Cmp::Lte => x <= *value,
                Cmp::Gt => x > *value,
                Cmp::Gte => x >= *value,
            }),
            Pattern::Bool(b) => match v {
                Val::Bool(x) => x == *b,
                _ => with_text(v, |t| eq(t, if *b { b"true" } else { b"false" }, false)),
            },
            Pattern::Not(inner) => !inner.matches(v),
            Pattern::Null | Pattern::Exists(_) | Pattern::FieldRef { .. } => false,
        }
    }

    /// A literal that every matching value contains (ASCII case-insensitively), for the
    /// prefilter; `None` when the pattern has no usable literal.
    pub fn required_literal(&self) -> Option<&[u8]> {
        match self {
            Pattern::Exact { needle, .. }
            | Pattern::Prefix { needle, .. }
            | Pattern::Suffix { needle, .. }
            | Pattern::Contains { needle, .. } => Some(needle),
            Pattern::Regex { literal, .. } => literal.as_deref(),
            _ => None,
        }
    }
}

#[inline]
fn eq(a: &[u8], b: &[u8], cased: bool) -> bool {
    if cased {
        a == b
    } else {
        a.eq_ignore_ascii_case(b)
    }
}

#[inline]
fn contains(hay: &[u8], needle: &[u8], cased: bool) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    if cased {
        return memchr::memmem::find(hay, needle).is_some();
    }
    if hay.len() < needle.len() {
        return false;
    }
    let last_start = hay.len() - needle.len();
    let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut i = 0;
    while i <= last_start {
        let Some(off) = memchr::memchr2(lo, up, &hay[i..=last_start]) else {
            return false;
        };
        let at = i + off;
        if hay[at + 1..at + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        i = at + 1;
    }
    false
}

/// A set of substring patterns tested in one pass.
#[derive(Debug, Clone)]
pub struct AnyContains {
    ac: AhoCorasick,
    cased: bool,
}

impl AnyContains {
    pub fn new(needles: &[&[u8]], cased: bool) -> Result<AnyContains, String> {
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(!cased)
            .match_kind(MatchKind::Standard)
            .build(needles)
            .map_err(|e| format!("building a substring matcher: {e}"))?;
        Ok(AnyContains { ac, cased })
    }

    /// Whether it compares case-sensitively (`|cased`).
    pub fn cased(&self) -> bool {
        self.cased
    }

    #[inline]
    pub fn matches(&self, v: Val<'_>) -> bool {
        with_text(v, |t| self.ac.is_match(t))
    }
}

/// What compiling a value needs from outside the rule.
#[derive(Debug, Default, Clone)]
pub struct ValueContext {
    /// `expand` placeholders: `%name%` → values.
    pub placeholders: HashMap<String, Vec<String>>,
}

/// One piece of a value after transformation.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Bytes(Vec<u8>),
    Star,
    One,
}

/// Compiles one value under `modifiers` into one or more patterns (OR-ed: `base64offset`,
/// `windash` and `expand` make several).
pub fn compile_value(
    value: &SigmaValue,
    modifiers: &[Modifier],
    ctx: &ValueContext,
    resolve_field: &dyn Fn(&str) -> Result<Accessor, String>,
) -> Result<Vec<Pattern>, String> {
    let has = |m: Modifier| modifiers.contains(&m);
    let cased = has(Modifier::Cased);
    for m in modifiers {
        if matches!(
            m,
            Modifier::Minute
                | Modifier::Hour
                | Modifier::Day
                | Modifier::Week
                | Modifier::Month
                | Modifier::Year
        ) {
            return Err(format!(
                "modifier `{}` (timestamp parts) is not supported",
                modifier_name(*m)
            ));
        }
    }
    let wrap = |p: Pattern| {
        if has(Modifier::Neq) {
            Pattern::Not(Box::new(p))
        } else {
            p
        }
    };
    if has(Modifier::Exists) {
        let want = match value {
            SigmaValue::Bool(b) => *b,
            SigmaValue::String(s) if s.original.eq_ignore_ascii_case("true") => true,
            SigmaValue::String(s) if s.original.eq_ignore_ascii_case("false") => false,
            other => return Err(format!("`exists` needs true or false, not `{other}`")),
        };
        return Ok(vec![Pattern::Exists(want)]);
    }
    if matches!(value, SigmaValue::Null) {
        return Ok(vec![wrap(Pattern::Null)]);
    }
    if has(Modifier::FieldRef) {
        let SigmaValue::String(s) = value else {
            return Err("`fieldref` needs a field name".into());
        };
        let other = resolve_field(&s.original)?;
        return Ok(vec![wrap(Pattern::FieldRef { other, cased })]);
    }
    if has(Modifier::Re) {
        let text = raw_text(value);
        if text.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "regular expression of {} bytes is too long",
                text.len()
            ));
        }
        let re = RegexBuilder::new(&text)
            .case_insensitive(has(Modifier::IgnoreCase))
            .multi_line(has(Modifier::Multiline))
            .dot_matches_new_line(has(Modifier::DotAll))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                format!(
                    "bad regular expression `{text}`: {}",
                    one_line(&e.to_string())
                )
            })?;
        let flags = literal::Flags {
            case_insensitive: has(Modifier::IgnoreCase),
            multi_line: has(Modifier::Multiline),
            dot_matches_new_line: has(Modifier::DotAll),
        };
        let literal = literal::required_literal(&text, flags).map(Vec::into_boxed_slice);
        return Ok(vec![wrap(Pattern::Regex {
            re,
            literal,
            prefix: None,
        })]);
    }
    if has(Modifier::Cidr) {
        let text = raw_text(value);
        let net = parse_cidr(&text)?;
        return Ok(vec![wrap(Pattern::Cidr(vec![net]))]);
    }
    for (m, op) in [
        (Modifier::Lt, Cmp::Lt),
        (Modifier::Lte, Cmp::Lte),
        (Modifier::Gt, Cmp::Gt),
        (Modifier::Gte, Cmp::Gte),
    ] {
        if has(m) {
            let v =
                match value {
                    SigmaValue::Integer(i) => *i as f64,
                    SigmaValue::Float(f) => *f,
                    SigmaValue::String(s) => s.original.trim().parse().map_err(|_| {
                        format!("`{}` needs a number, not `{}`", modifier_name(m), s)
                    })?,
                    other => {
                        return Err(format!(
                            "`{}` needs a number, not `{other}`",
                            modifier_name(m)
                        ));
                    }
                };
            return Ok(vec![wrap(Pattern::Compare { op, value: v })]);
        }
    }
    let string_modifiers = [
        Modifier::Contains,
        Modifier::StartsWith,
        Modifier::EndsWith,
        Modifier::Base64,
        Modifier::Base64Offset,
        Modifier::Wide,
        Modifier::Utf16,
        Modifier::Utf16be,
        Modifier::WindAsh,
        Modifier::Expand,
    ];
    let plain = !string_modifiers.iter().any(|m| has(*m));
    match value {
        SigmaValue::Integer(i) if plain => {
            return Ok(vec![wrap(Pattern::Number {
                value: *i as f64,
                text: i.to_string().into_bytes().into(),
            })]);
        }
        SigmaValue::Float(f) if plain => {
            return Ok(vec![wrap(Pattern::Number {
                value: *f,
                text: f.to_string().into_bytes().into(),
            })]);
        }
        SigmaValue::Bool(b) if plain => return Ok(vec![wrap(Pattern::Bool(*b))]),
        _ => {}
    }
    let mut variants: Vec<Vec<Piece>> = vec![pieces(value)];
    for m in modifiers {
        variants = match m {
            Modifier::Expand => expand(variants, ctx)?,
            Modifier::WindAsh => windash(variants),
            Modifier::Wide => encode_all(variants, |s| utf16(s, false, false))?,
            Modifier::Utf16 => encode_all(variants, |s| utf16(s, false, true))?,
            Modifier::Utf16be => encode_all(variants, |s| utf16(s, true, false))?,
            Modifier::Base64 => encode_all(variants, |s| {
                base64::engine::general_purpose::STANDARD
                    .encode(s)
                    .into_bytes()
            })?,
            Modifier::Base64Offset => base64_offsets(variants)?,
            _ => variants,
        };
    }
    let mut out = Vec::with_capacity(variants.len());
    for mut v in variants {
        if has(Modifier::Contains) || has(Modifier::EndsWith) {
            v.insert(0, Piece::Star);
        }
        if has(Modifier::Contains) || has(Modifier::StartsWith) {
            v.push(Piece::Star);
        }
        let size: usize = v
            .iter()
            .map(|p| match p {
                Piece::Bytes(b) => b.len(),
                _ => 1,
            })
            .sum();
        if size > MAX_VALUE_BYTES {
            return Err(format!(
                "value of {size} bytes is too long (limit {MAX_VALUE_BYTES})"
            ));
        }
        out.push(wrap(classify(merge(v), cased)?));
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub fn modifier_name(m: Modifier) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{m:?}"))
}

fn raw_text(value: &SigmaValue) -> String {
    match value {
        SigmaValue::String(s) => s.original.clone(),
        other => other.to_string(),
    }
}

pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let t = text.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(net);
    }
    t.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("bad CIDR `{text}`"))
}

fn pieces(value: &SigmaValue) -> Vec<Piece> {
    match value {
        SigmaValue::String(s) => s
            .parts
            .iter()
            .map(|p| match p {
                StringPart::Plain(t) => Piece::Bytes(t.as_bytes().to_vec()),
                StringPart::Special(SpecialChar::WildcardMulti) => Piece::Star,
                StringPart::Special(SpecialChar::WildcardSingle) => Piece::One,
            })
            .collect(),
        other => vec![Piece::Bytes(other.to_string().into_bytes())],
    }
}

fn merge(v: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(v.len());
    for p in v {
        match (out.last_mut(), p) {
            (Some(Piece::Bytes(a)), Piece::Bytes(b)) => a.extend_from_slice(&b),
            (Some(Piece::Star), Piece::Star) => {}
            (_, Piece::Bytes(b)) if b.is_empty() => {}
            (_, p) => out.push(p),
        }
    }
    out
}

fn classify(v: Vec<Piece>, cased: bool) -> Result<Pattern, String> {
    use Piece::{Bytes, Star};
    Ok(match v.as_slice() {
        [] => Pattern::Exact {
            needle: Box::default(),
            cased,
        },
        [Star] => Pattern::Any,
        [Bytes(b)] => Pattern::Exact {
            needle: b.clone().into(),
            cased,
        },
        [Bytes(b), Star] => Pattern::Prefix {
            needle: b.clone().into(),
            cased,
        },
        [Star, Bytes(b)] => Pattern::Suffix {
            needle: b.clone().into(),
            cased,
        },
        [Star, Bytes(b), Star] => Pattern::Contains {
            needle: b.clone().into(),
            cased,
        },
        _ => Pattern::Regex {
            re: glob_regex(&v, cased)?,
            prefix: match v.first() {
                Some(Bytes(b)) => Some(b.clone().into_boxed_slice()),
                _ => None,
            },
            literal: v
                .iter()
                .filter_map(|p| match p {
                    Bytes(b) => Some(b),
                    _ => None,
                })
                .max_by_key(|b| b.len())
                .map(|b| b.to_ascii_lowercase().into_boxed_slice()),
        },
    })
}

fn glob_regex(v: &[Piece], cased: bool) -> Result<Regex, String> {
    let mut re = String::from(if cased { "(?s-u)^" } else { "(?is-u)^" });
    for p in v {
        match p {
            Piece::Star => re.push_str(".*"),
            Piece::One => re.push('.'),
            Piece::Bytes(b) => {
                for &byte in b {
                    if byte.is_ascii_alphanumeric() || byte == b' ' || byte == b'_' {
                        re.push(char::from(byte));
                    } else {
                        re.push_str(&format!("\\x{byte:02x}"));
                    }
                }
            }
        }
    }
    re.push('$');
    RegexBuilder::new(&re)
        .unicode(false)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("wildcard pattern too complex: {}", one_line(&e.to_string())))
}

fn plain_only(v: &[Piece], what: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for p in v {
        match p {
            Piece::Bytes(b) => out.extend_from_slice(b),
            _ => {
                return Err(format!(
                    "wildcards inside a `{what}` value are not supported"
                ));
            }
        }
    }
    Ok(out)
}

fn encode_all(
    variants: Vec<Vec<Piece>>,
    f: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<Vec<Vec<Piece>>, String> {
    variants
        .into_iter()
        .map(|v| {
            // Wildcards at the ends survive an encoding; inside they cannot.
            let lead = matches!(v.first(), Some(Piece::Star));
            let trail = v.len() > 1 && matches!(v.last(), Some(Piece::Star));
            let inner: Vec<Piece> = v.into_iter().skip(usize::from(lead)).collect::<Vec<_>>();
            let inner = if trail {
                inner[..inner.len().saturating_sub(1)].to_vec()
            } else {
                inner
            };
            let bytes = plain_only(&inner, "encoded")?;
            let mut out = Vec::new();
            if lead {
                out.push(Piece::Star);
            }
            out.push(Piece::Bytes(f(&bytes)));
            if trail {
                out.push(Piece::Star);
            }
            Ok(out)
        })
        .collect()
}

fn utf16(s: &[u8], big_endian: bool, bom: bool) -> Vec<u8> {
    let text = String::from_utf8_lossy(s);
    let mut out = Vec::with_capacity(s.len() * 2 + 2);
    if bom {
        out.extend_from_slice(&[0xff, 0xfe]);
    }
    for unit in text.encode_utf16() {
        if big_endian {
            out.extend_from_slice(&unit.to_be_bytes());
        } else {
            out.extend_from_slice(&unit.to_le_bytes());
        }
    }
    out
}

/// `base64offset`: the three encodings of the value at byte offsets 0, 1, 2, each trimmed to
/// the characters that do not depend on the surrounding bytes (as pySigma does).
fn base64_offsets(variants: Vec<Vec<Piece>>) -> Result<Vec<Vec<Piece>>, String> {
    const START: [usize; 3] = [0, 2, 3];
    const END: [usize; 3] = [0, 3, 2];
    let mut out = Vec::new();
    for v in variants {
        let bytes = plain_only(&v, "base64offset")?;
        for shift in 0..3 {
            let mut padded = vec![b' '; shift];
            padded.extend_from_slice(&bytes);
            let enc = base64::engine::general_purpose::STANDARD.encode(&padded);
            let enc = enc.trim_end_matches('=');
            let end_trim = END[(bytes.len() + shift) % 3];
            let start = START[shift];
            let stop = enc.len().saturating_sub(end_trim);
            if start < stop {
                out.push(vec![Piece::Bytes(enc.as_bytes()[start..stop].to_vec())]);
            }
        }
    }
    Ok(out)
}

fn windash(variants: Vec<Vec<Piece>>) -> Vec<Vec<Piece>> {
    const DASHES: [&str; 5] = ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"];
    let mut out = Vec::new();
    for v in variants {
        for d in DASHES {
            out.push(
                v.iter()
                    .map(|p| match p {
                        Piece::Bytes(b) => {
                            Piece::Bytes(String::from_utf8_lossy(b).replace('-', d).into_bytes())
                        }
                        other => other.clone(),
                    })
                    .collect(),
            );
        }
    }
    out.dedup();
    out
}

fn expand(variants: Vec<Vec<Piece>>, ctx: &ValueContext) -> Result<Vec<Vec<Piece>>, String> {
    let mut out = Vec::new();
    for v in variants {
        let mut partial: Vec<Vec<Piece>> = vec![Vec::new()];
        for p in v {
            let Piece::Bytes(b) = &p else {
                for acc in &mut partial {
                    acc.push(p.clone());
                }
                continue;
            };
            let text = String::from_utf8_lossy(b).into_owned();
            let mut segments: Vec<Vec<String>> = Vec::new();
            let mut rest = text.as_str();
            while let Some(start) = rest.find('%') {
                let after = &rest[start + 1..];
                let Some(len) = after.find('%') else { break };
                let name = &after[..len];
                segments.push(vec![rest[..start].to_owned()]);
                let values = ctx.placeholders.get(name).ok_or_else(|| {
                    format!("placeholder `%{name}%` has no values in the detection config")
                })?;
                segments.push(values.clone());
                rest = &after[len + 1..];
            }
            segments.push(vec![rest.to_owned()]);
            for seg in segments {
                let mut next = Vec::with_capacity(partial.len() * seg.len());
                for acc in &partial {
                    for s in &seg {
                        let mut a = acc.clone();
                        a.push(Piece::Bytes(s.clone().into_bytes()));
                        next.push(a);
                    }
                }
                if next.len() > 4096 {
                    return Err("`expand` makes more than 4096 values".into());
                }
                partial = next;
            }
        }
        out.extend(partial);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsigma_parser::SigmaString;

    fn compile(v: &str, mods: &[Modifier]) -> Vec<Pattern> {
        compile_value(
            &SigmaValue::String(SigmaString::new(v)),
            mods,
            &ValueContext::default(),
            &|_| Err("no".into()),
        )
        .unwrap()
    }

    fn hit(ps: &[Pattern], s: &str) -> bool {
        ps.iter().any(|p| p.matches(Val::Str(s)))
    }

    #[test]
    fn wildcards_and_case() {
        let p = compile("*/bin/ba?h", &[]);
        assert!(hit(&p, "/usr/BIN/bash"));
        assert!(!hit(&p, "/usr/bin/bsh"));
        let p = compile("Curl", &[Modifier::Contains]);
        assert!(hit(&p, "x CURL y"));
        let p = compile("Curl", &[Modifier::Contains, Modifier::Cased]);
        assert!(!hit(&p, "x CURL y"));
        let p = compile("a\\*b", &[]);
        assert!(hit(&p, "a*b"));
        assert!(!hit(&p, "axxb"));
    }

    #[test]
    fn base64offset_finds_the_value_at_every_offset() {
        let p = compile("/bin/sh", &[Modifier::Base64Offset, Modifier::Contains]);
        for prefix in ["", "a", "ab"] {
            let enc = base64::engine::general_purpose::STANDARD
                .encode(format!("{prefix}/bin/sh -i").as_bytes());
            assert!(hit(&p, &enc), "{prefix}: {enc}");
        }
    }

    #[test]
    fn regex_flags_and_limits() {
        let p = compile_value(
            &SigmaValue::from_raw_string("^ab.c$"),
            &[Modifier::Re, Modifier::IgnoreCase],
            &ValueContext::default(),
            &|_| Err("no".into()),
        )
        .unwrap();
        assert!(hit(&p, "ABxC"));
        let huge = "(a{100}){100}".repeat(20);
        assert!(
            compile_value(
                &SigmaValue::from_raw_string(&huge),
                &[Modifier::Re],
                &ValueContext::default(),
                &|_| Err("no".into()),
            )
            .is_err()
        );
    }

    #[test]
    fn windash_and_expand() {
        let p = compile("-enc", &[Modifier::WindAsh, Modifier::Contains]);
        assert!(hit(&p, "x /enc y"));
        let mut ctx = ValueContext::default();
        ctx.placeholders
            .insert("dirs".into(), vec!["/tmp".into(), "/dev/shm".into()]);
        let p = compile_value(
            &SigmaValue::String(SigmaString::new("%dirs%/*")),
            &[Modifier::Expand],
            &ctx,
            &|_| Err("no".into()),
        )
        .unwrap();
        assert!(hit(&p, "/dev/shm/x"));
        assert!(!hit(&p, "/var/x"));
    }

    #[test]
    fn numbers_cidr_compare() {
        let p = compile_value(
            &SigmaValue::Integer(4444),
            &[],
            &ValueContext::default(),
            &|_| Err("no".into()),
        )
        .unwrap();
        assert!(p[0].matches(Val::Int(4444)));
        assert!(p[0].matches(Val::Str("4444")));
        let p = compile("10.0.0.0/8", &[Modifier::Cidr]);
        assert!(p[0].matches(Val::Ip("10.1.2.3".parse().unwrap())));
        assert!(!p[0].matches(Val::Ip("11.1.2.3".parse().unwrap())));
        let p = compile("100", &[Modifier::Gte]);
        assert!(p[0].matches(Val::Int(100)));
        assert!(!p[0].matches(Val::Int(99)));
    }
}
