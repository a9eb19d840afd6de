//! The literal every match of a regular expression contains, so a `re` or mid-value wildcard
//! pattern can take part in the engine's Aho-Corasick prefilter like a plain substring does.
//!
//! The answer is used ASCII case-insensitively (the prefilter folds case), so a class that only
//! holds both cases of one ASCII letter counts as that letter. Anything unsure yields no
//! literal: a missing literal costs speed, a wrong one would lose matches.

use regex_syntax::ParserBuilder;
use regex_syntax::hir::{Class, Hir, HirKind};

/// Flags the pattern is compiled with that change what it matches.
#[derive(Debug, Clone, Copy, Default)]
pub struct Flags {
    pub case_insensitive: bool,
    pub multi_line: bool,
    pub dot_matches_new_line: bool,
}

/// The longest literal (ASCII-lowercased) that every match of `pattern` contains, if any.
pub fn required_literal(pattern: &str, flags: Flags) -> Option<Vec<u8>> {
    let hir = ParserBuilder::new()
        .utf8(false)
        .case_insensitive(flags.case_insensitive)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_matches_new_line)
        .build()
        .parse(pattern)
        .ok()?;
    let facts = facts(&hir, 0);
    facts.best.filter(|b| !b.is_empty())
}

/// What is known of the matches of one sub-expression.
struct Facts {
    /// Every match is exactly these bytes (case-folded).
    exact: Option<Vec<u8>>,
    /// The longest run every match contains.
    best: Option<Vec<u8>>,
}

impl Facts {
    fn exact(bytes: Vec<u8>) -> Facts {
        Facts {
            best: Some(bytes.clone()),
            exact: Some(bytes),
        }
    }

    fn unknown() -> Facts {
        Facts {
            exact: None,
            best: None,
        }
    }
}

/// Nesting below which the walk gives up (the parser already bounds it; stay safe).
const MAX_DEPTH: usize = 64;

fn facts(hir: &Hir, depth: usize) -> Facts {
    if depth > MAX_DEPTH {
        return Facts::unknown();
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Facts::exact(Vec::new()),
        HirKind::Literal(lit) => Facts::exact(lit.0.to_ascii_lowercase()),
        HirKind::Class(class) => match one_folded_byte(class) {
            Some(b) => Facts::exact(vec![b]),
            None => Facts::unknown(),
        },
        HirKind::Capture(cap) => facts(&cap.sub, depth + 1),
        HirKind::Repetition(rep) => {
            let inner = facts(&rep.sub, depth + 1);
            if rep.min == 0 {
                return Facts::unknown();
            }
            if rep.min == 1 && rep.max == Some(1) {
                return inner;
            }
            Facts {
                exact: None,
                best: inner.best,
            }
        }
        HirKind::Concat(subs) => {
            let mut run: Option<Vec<u8>> = Some(Vec::new());
            let mut best: Option<Vec<u8>> = None;
            let keep = |candidate: Option<Vec<u8>>, best: &mut Option<Vec<u8>>| {
                if let Some(c) = candidate
                    && best.as_ref().is_none_or(|b| c.len() > b.len())
                {
                    *best = Some(c);
                }
            };
            let mut all_exact = true;
            for sub in subs {
                let f = facts(sub, depth + 1);
                match f.exact {
                    Some(bytes) => {
                        if let Some(r) = run.as_mut() {
                            r.extend_from_slice(&bytes);
                        }
                    }
                    None => {
                        all_exact = false;
                        keep(run.take(), &mut best);
                        keep(f.best, &mut best);
                        run = Some(Vec::new());
                    }
                }
            }
            if all_exact {
                return Facts::exact(run.unwrap_or_default());
            }
            keep(run, &mut best);
            Facts { exact: None, best }
        }
        // One branch or another: no single literal is certain (a set would be; not worth it).
        HirKind::Alternation(_) => Facts::unknown(),
    }
}

/// The one byte a class matches, case folded: `[a]`, `[aA]`, `[\x2f]`.
fn one_folded_byte(class: &Class) -> Option<u8> {
    let mut bytes: Vec<u8> = match class {
        Class::Unicode(c) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                let (s, e) = (u32::from(r.start()), u32::from(r.end()));
                if e >= 0x80 || e - s > 1 {
                    return None;
                }
                out.extend((s..=e).filter_map(|c| u8::try_from(c).ok()));
            }
            out
        }
        Class::Bytes(c) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                if r.end() - r.start() > 1 {
                    return None;
                }
                out.extend(r.start()..=r.end());
            }
            out
        }
    };
    for b in &mut bytes {
        b.make_ascii_lowercase();
    }
    bytes.dedup();
    match bytes.as_slice() {
        [b] => Some(*b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(p: &str) -> Option<String> {
        required_literal(p, Flags::default()).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    fn lit_i(p: &str) -> Option<String> {
        let flags = Flags {
            case_insensitive: true,
            ..Flags::default()
        };
        required_literal(p, flags).map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn longest_certain_run() {
        assert_eq!(lit("abc").as_deref(), Some("abc"));
        assert_eq!(lit("^/tmp/.*\\.sh$").as_deref(), Some("/tmp/"));
        assert_eq!(lit("x[0-9]+ longer one").as_deref(), Some(" longer one"));
        assert_eq!(lit("(bash|sh) -i").as_deref(), Some(" -i"));
        assert_eq!(lit("Base64").as_deref(), Some("base64"));
        assert_eq!(lit("(?:chmod)+ 77").as_deref(), Some("chmod"));
        assert_eq!(lit("a(bcd)e").as_deref(), Some("abcde"));
        assert_eq!(lit("a(?:bcd){1}e").as_deref(), Some("abcde"));
    }

    #[test]
    fn nothing_uncertain() {
        assert_eq!(lit("a|b"), None);
        assert_eq!(lit("(abc)?"), None);
        assert_eq!(lit("x*"), None);
        assert_eq!(lit("[0-9]{2,20}"), None);
        assert_eq!(lit("("), None);
        assert_eq!(lit("-(W|R)\\s?"), Some("-".into()));
    }

    #[test]
    fn case_insensitive_letters_fold() {
        assert_eq!(lit_i("whoami").as_deref(), Some("whoami"));
        // `k` folds to the Kelvin sign too, under Unicode rules: not one byte.
        assert_eq!(lit_i("ok then").as_deref(), Some(" then"));
        assert_eq!(lit("[aA]bc").as_deref(), Some("abc"));
    }
}
