//! What a rule asks the agent to do when it fires: the `response` custom attribute.
//!
//! ```yaml
//! response:
//!     - kill_tree
//! ```
//!
//! Sigma allows arbitrary custom attributes, so a rule that carries one stays a valid Sigma
//! rule everywhere else. The actions are `kill` (the matched process), `kill_tree` (it and its
//! descendants), `quarantine` (the event's `file.path`, else the process's executable) and
//! `block_ip` (the event's remote address). They are requests: the agent carries them out only
//! where `[response]` is enabled, behind its guard rails, rate limits and dry-run. An unknown
//! action refuses the rule when it compiles, so a typo never ships.

use serde::Serialize;

/// One requested action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseKind {
    Kill,
    KillTree,
    Quarantine,
    BlockIp,
}

impl ResponseKind {
    pub const ALL: [ResponseKind; 4] = [
        ResponseKind::Kill,
        ResponseKind::KillTree,
        ResponseKind::Quarantine,
        ResponseKind::BlockIp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ResponseKind::Kill => "kill",
            ResponseKind::KillTree => "kill_tree",
            ResponseKind::Quarantine => "quarantine",
            ResponseKind::BlockIp => "block_ip",
        }
    }

    pub fn parse(s: &str) -> Option<ResponseKind> {
        ResponseKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// The attribute's key.
pub const ATTRIBUTE: &str = "response";

/// The actions in a rule's `response` attribute (a name or a list of names); none without it.
pub fn parse(
    attributes: &std::collections::HashMap<String, yaml_serde::Value>,
) -> Result<Vec<ResponseKind>, String> {
    let Some(value) = attributes.get(ATTRIBUTE) else {
        return Ok(Vec::new());
    };
    let names: Vec<&yaml_serde::Value> = match value {
        yaml_serde::Value::Sequence(items) => items.iter().collect(),
        one => vec![one],
    };
    let mut out = Vec::new();
    for n in names {
        let name = n.as_str().ok_or_else(|| {
            format!("response: expected an action name or a list of them, got {n:?}")
        })?;
        let kind = ResponseKind::parse(name).ok_or_else(|| {
            let known: Vec<&str> = ResponseKind::ALL.iter().map(|k| k.as_str()).collect();
            format!(
                "response: unknown action {name:?}; expected one of {}",
                known.join(", ")
            )
        })?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(yaml: &str) -> std::collections::HashMap<String, yaml_serde::Value> {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn names_and_lists_parse_and_typos_do_not() {
        assert_eq!(parse(&attrs("other: 1")), Ok(vec![]));
        assert_eq!(
            parse(&attrs("response: kill")),
            Ok(vec![ResponseKind::Kill])
        );
        assert_eq!(
            parse(&attrs("response: [kill_tree, block_ip, kill_tree]")),
            Ok(vec![ResponseKind::KillTree, ResponseKind::BlockIp])
        );
        let err = parse(&attrs("response: [kil]")).unwrap_err();
        assert!(
            err.contains("\"kil\"") && err.contains("kill_tree"),
            "{err}"
        );
        assert!(parse(&attrs("response: {a: 1}")).is_err());
    }
}
