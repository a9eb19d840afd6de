//! What a rollout delivers: a content bundle or an agent release. The engine (rings, control
//! groups, gates, windows, promotion, rollback) is the same for every kind; a kind only says
//! which version an agent's check-ins count as "new", which fallbacks count against it, where
//! the fleet's baseline and pins live, and how a rollback re-offers the previous version.
//!
//! Kinds are governed separately: one active rollout per kind (`rollouts.active` holds the
//! kind's slot), separate baselines and pins, so a ring may stay on agent N-1 while it takes new
//! content, and the reverse. An exception overlay would be a third kind with its own slot.
//!
//! Versions of both kinds are integers in the rollout row: a content version, or a release's
//! sequence number (`releases.seq`, in publish order; the agent reports the release's version
//! label, which the gate maps back through the `releases` table).

use serde::{Deserialize, Serialize};

/// What a rollout delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A signed content bundle (`content` table, `fleet.baseline_version`, `agent_pins`).
    Content,
    /// A signed agent release (`releases`, `fleet.release_baseline`, `release_pins`).
    Agent,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Content, Kind::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Content => "content",
            Kind::Agent => "agent",
        }
    }

    /// `content` or `agent`.
    pub fn parse(s: &str) -> Result<Kind, String> {
        match s {
            "content" => Ok(Kind::Content),
            "agent" => Ok(Kind::Agent),
            other => Err(format!("unknown rollout kind {other:?}: content or agent")),
        }
    }

    /// The kind's value of `rollouts.active` while a rollout of it is active (the column is
    /// unique, so one active rollout per kind).
    pub fn slot(self) -> i64 {
        match self {
            Kind::Content => 1,
            Kind::Agent => 2,
        }
    }

    /// An SQL condition: the row aliased `alias` (a check-in or an agent's state) runs version
    /// `param` of this kind.
    pub fn runs_sql(self, alias: &str, param: &str) -> String {
        match self {
            Kind::Content => format!("{alias}.content_version = {param}"),
            Kind::Agent => format!(
                "{alias}.agent_version = (SELECT version FROM releases WHERE seq = {param})"
            ),
        }
    }

    /// An SQL expression over check-in `c`: the fallbacks that count against this kind. An agent
    /// release answers for its own fallbacks and for content it can no longer load.
    pub fn fallbacks_sql(self) -> &'static str {
        match self {
            Kind::Content => "CAST(c.lkg AS DOUBLE PRECISION)",
            Kind::Agent => {
                "(CAST(c.lkg AS DOUBLE PRECISION) + CAST(c.release_fallbacks AS DOUBLE PRECISION))"
            }
        }
    }

    /// The `fleet` column holding this kind's baseline, and an SQL condition that version
    /// `param` of this kind is published.
    pub fn baseline_sql(self, param: &str) -> (&'static str, String) {
        match self {
            Kind::Content => (
                "baseline_version",
                format!("EXISTS (SELECT 1 FROM content WHERE version = {param})"),
            ),
            Kind::Agent => (
                "release_baseline",
                format!("EXISTS (SELECT 1 FROM releases WHERE seq = {param})"),
            ),
        }
    }

    /// A version of this kind, in words.
    pub fn describe(self, version: i64, label: Option<&str>) -> String {
        match (self, label) {
            (Kind::Content, _) => format!("content v{version}"),
            (Kind::Agent, Some(l)) => format!("agent release {l} (#{version})"),
            (Kind::Agent, None) => format!("agent release #{version}"),
        }
    }

    /// What the fallbacks [`Kind::fallbacks_sql`] counts are, completing "N ring agents fell
    /// back …" for a rollout offering `offered` (in [`Kind::describe`]'s words).
    pub fn fallback_words(self, offered: &str) -> String {
        match self {
            Kind::Content => "to last-known-good content".to_owned(),
            Kind::Agent => format!(
                "from {offered} to their previous release (its supervisor saw a crash loop, a \
                 failed trial or a worker that stopped beating) or to last-known-good content"
            ),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_their_own_slots_and_names() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()).unwrap(), k);
        }
        assert_ne!(Kind::Content.slot(), Kind::Agent.slot());
        assert!(Kind::parse("exception").is_err());
        assert!(Kind::Agent.runs_sql("c", "$1").contains("releases"));
    }
}
