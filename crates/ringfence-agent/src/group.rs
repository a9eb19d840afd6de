//! Finding groups: repeats of one finding folded into a count, so a storm is one alert.
//!
//! Findings with the same rule, host, actor and target within a window (`[findings]
//! group_window_secs`, 60 s by default) are one group. The first finding of a group leaves at
//! once, unchanged: grouping adds no latency. Later ones are folded; when the window closes, a
//! group that folded any emits one summary: its latest finding with `ringfence.finding.count`
//! (every match in the window, the first included), `event.start` (the first match) and
//! `event.end` (the last), see [`ringfence_detect::finding::Repeat`]. The next match after that
//! opens a new group.
//!
//! The key: `rule.id`, `host.name`, the actor and the target.
//! - The actor is the process that acted: for an exec, the parent that ran it; otherwise the
//!   process itself. A process is its pid, executable and start time (a reused pid is another
//!   actor).
//! - The target is what was acted on: the command line of an exec, and any of the file paths,
//!   target process, destination, source address, URL, module, user and correlation group the
//!   finding carries. Tamper findings (`rule.ruleset: ringfence-tamper`) have no target: they
//!   are grouped per actor process (one `bpftool prog show` is one finding, not one per
//!   program).
//!
//! The table is bounded (`group_capacity`, 4096 keys by default; each key's parts are cut at
//! [`KEY_PART_MAX`] bytes): when it is full, the oldest group closes early (its summary, if
//! any, leaves at once) and the eviction is counted. Health reports and response decisions are
//! not findings and pass through.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use ringfence_detect::Format;
use ringfence_detect::finding::Repeat;
use ringfence_event::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// The longest part of a key kept, in bytes (a command line beyond it is cut).
pub const KEY_PART_MAX: usize = 512;
/// The longest window accepted, in seconds.
pub const WINDOW_MAX_SECS: u64 = 3600;
/// The largest table accepted.
pub const CAPACITY_MAX: usize = 65_536;

/// `[findings]`: how repeated findings are folded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FindingsSection {
    /// Seconds a group stays open after its first finding; 0 turns grouping off (every match
    /// is a finding). At most 3600.
    pub group_window_secs: u64,
    /// Groups held at once; beyond it the oldest closes early. 1 to 65536.
    pub group_capacity: usize,
}

impl Default for FindingsSection {
    fn default() -> Self {
        FindingsSection {
            group_window_secs: 60,
            group_capacity: 4096,
        }
    }
}

impl FindingsSection {
    /// Values out of bounds, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.group_window_secs > WINDOW_MAX_SECS {
            out.push((
                "group_window_secs",
                format!(
                    "must be at most {WINDOW_MAX_SECS}, got {}",
                    self.group_window_secs
                ),
            ));
        }
        if self.group_capacity == 0 || self.group_capacity > CAPACITY_MAX {
            out.push((
                "group_capacity",
                format!("must be 1 to {CAPACITY_MAX}, got {}", self.group_capacity),
            ));
        }
        out
    }
}

/// What makes two findings the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    rule: String,
    host: String,
    actor: String,
    target: String,
}

/// Fields that name what a finding acted on, besides an exec's command line.
const TARGET_FIELDS: [&[&str]; 10] = [
    &["file", "path"],
    &["file", "original", "path"],
    &["target", "process", "pid"],
    &["destination", "ip"],
    &["destination", "port"],
    &["source", "ip"],
    &["url", "original"],
    &["ringfence", "kernel_module", "name"],
    &["user", "name"],
    &["ringfence", "finding", "correlation", "group"],
];

fn field<'a>(doc: &'a Json, path: &[&str]) -> Option<&'a Json> {
    path.iter().try_fold(doc, |v, k| v.get(*k))
}

/// `v` as text, cut at [`KEY_PART_MAX`] bytes (on a character boundary).
fn push_part(out: &mut String, v: Option<&Json>) {
    let start = out.len();
    match v {
        None | Some(Json::Null) => {}
        Some(Json::String(s)) => out.push_str(s),
        Some(other) => out.push_str(&other.to_string()),
    }
    if out.len() - start > KEY_PART_MAX {
        let mut end = start + KEY_PART_MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out.push('\u{1f}');
}

impl GroupKey {
    fn of(doc: &Json) -> GroupKey {
        let text = |path: &[&str]| {
            let mut s = String::new();
            push_part(&mut s, field(doc, path));
            s
        };
        let exec = field(doc, &["event", "action"]).and_then(Json::as_str) == Some("exec");
        let actor_at: &[&str] = if exec {
            &["process", "parent"]
        } else {
            &["process"]
        };
        let mut actor = String::new();
        if let Some(p) = field(doc, actor_at) {
            for k in ["pid", "executable", "start"] {
                push_part(&mut actor, p.get(k));
            }
        }
        let tamper =
            field(doc, &["rule", "ruleset"]).and_then(Json::as_str) == Some(crate::tamper::RULESET);
        let mut target = String::new();
        if !tamper {
            if exec {
                push_part(&mut target, field(doc, &["process", "command_line"]));
            }
            for path in TARGET_FIELDS {
                push_part(&mut target, field(doc, path));
            }
        }
        GroupKey {
            rule: text(&["rule", "id"]),
            host: text(&["host", "name"]),
            actor,
            target,
        }
    }
}

#[derive(Debug)]
struct Group {
    repeat: Repeat,
    /// The latest finding folded in (the summary is made from it).
    latest: Json,
}

/// The groups open now. Windows have one length and open in order, so the oldest group is
/// always the first to close: `order` is a queue.
#[derive(Debug)]
pub struct FindingGroups {
    window: Duration,
    capacity: usize,
    groups: HashMap<GroupKey, Group>,
    order: VecDeque<(Instant, GroupKey)>,
    /// Findings folded into a group rather than emitted.
    pub folded: u64,
    /// Groups closed early because the table was full.
    pub evictions: u64,
}

impl FindingGroups {
    pub fn new(section: &FindingsSection) -> FindingGroups {
        FindingGroups {
            window: Duration::from_secs(section.group_window_secs.min(WINDOW_MAX_SECS)),
            capacity: section.group_capacity.clamp(1, CAPACITY_MAX),
            groups: HashMap::new(),
            order: VecDeque::new(),
            folded: 0,
            evictions: 0,
        }
    }

    /// Groups open now.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Take `finding` (ECS, of an event at `at`) in at `now`: push what is to be emitted now
    /// onto `out` (the finding itself when it opens a group, and any summary a full table
    /// closed early), nothing when it is folded.
    pub fn offer(&mut self, finding: Json, at: Timestamp, now: Instant, out: &mut Vec<Json>) {
        if self.window.is_zero() || finding["event"]["kind"] != "alert" {
            out.push(finding);
            return;
        }
        let key = GroupKey::of(&finding);
        if let Some(g) = self.groups.get_mut(&key) {
            g.repeat.add(at);
            g.latest = finding;
            self.folded = self.folded.saturating_add(1);
            return;
        }
        while self.groups.len() >= self.capacity {
            let Some((_, oldest)) = self.order.pop_front() else {
                break;
            };
            self.evictions = self.evictions.saturating_add(1);
            self.close(&oldest, out);
        }
        self.order.push_back((now + self.window, key.clone()));
        self.groups.insert(
            key,
            Group {
                repeat: Repeat::once(at),
                latest: finding.clone(),
            },
        );
        out.push(finding);
    }

    /// Close the groups whose window has ended by `now`, pushing their summaries onto `out`.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Json>) {
        while let Some((closes, _)) = self.order.front() {
            if *closes > now {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.close(&key, out);
            }
        }
    }

    /// Close every group (the agent is stopping).
    pub fn close_all(&mut self, out: &mut Vec<Json>) {
        while let Some((_, key)) = self.order.pop_front() {
            self.close(&key, out);
        }
    }

    /// When the oldest open group closes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(closes, _)| *closes)
    }

    fn close(&mut self, key: &GroupKey, out: &mut Vec<Json>) {
        if let Some(g) = self.groups.remove(key)
            && g.repeat.count > 1
        {
            let mut summary = g.latest;
            g.repeat.apply(Format::Ecs, &mut summary);
            out.push(summary);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn section(window: u64, capacity: usize) -> FindingsSection {
        FindingsSection {
            group_window_secs: window,
            group_capacity: capacity,
        }
    }

    fn tamper(pid: u32, object: u32) -> Json {
        json!({
            "event": {"kind": "alert", "action": "bpf-load"},
            "rule": {"id": "ringfence-tamper-bpf-look", "ruleset": "ringfence-tamper"},
            "host": {"name": "web1"},
            "process": {"pid": pid, "executable": "/usr/sbin/bpftool", "start": "2026-12-06T04:00:00Z"},
            "ringfence": {"bpf": {"object_id": object}, "finding": {"level": "low"}},
        })
    }

    fn exec(parent: u32, command_line: &str) -> Json {
        json!({
            "event": {"kind": "alert", "action": "exec"},
            "rule": {"id": "r-shell", "ruleset": "webshell.yml"},
            "host": {"name": "web1"},
            "process": {"pid": 9000 + parent, "command_line": command_line,
                        "parent": {"pid": parent, "executable": "/usr/sbin/nginx"}},
        })
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_first_leaves_at_once_and_repeats_become_one_summary() {
        let mut g = FindingGroups::new(&section(60, 4096));
        let t0 = Instant::now();
        let mut out = Vec::new();
        // 257 objects looked at by one bpftool: one finding now, one summary later.
        for i in 0..257 {
            g.offer(
                tamper(4242, i),
                at(i64::from(i) / 100),
                t0 + Duration::from_millis(u64::from(i)),
                &mut out,
            );
        }
        assert_eq!(out.len(), 1, "only the first leaves at once");
        assert!(out[0]["ringfence"]["finding"]["count"].is_null());
        assert_eq!(g.folded, 256);
        out.clear();
        g.expire(t0 + Duration::from_secs(59), &mut out);
        assert!(out.is_empty(), "the window is still open");
        assert_eq!(g.next_deadline(), Some(t0 + Duration::from_secs(60)));
        g.expire(t0 + Duration::from_secs(60), &mut out);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s["ringfence"]["finding"]["count"], 257);
        assert_eq!(s["ringfence"]["finding"]["level"], "low");
        assert_eq!(s["event"]["start"], at(0).to_string());
        assert_eq!(s["event"]["end"], at(2).to_string());
        assert_eq!(s["ringfence"]["bpf"]["object_id"], 256, "the latest one");
        assert!(g.is_empty());
        // After the window, the next one opens a new group and leaves at once.
        out.clear();
        g.offer(
            tamper(4242, 1),
            at(70),
            t0 + Duration::from_secs(70),
            &mut out,
        );
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn a_group_of_one_closes_without_a_summary() {
        let mut g = FindingGroups::new(&section(60, 4096));
        let t0 = Instant::now();
        let mut out = Vec::new();
        g.offer(tamper(1, 1), at(0), t0, &mut out);
        out.clear();
        g.expire(t0 + Duration::from_secs(61), &mut out);
        assert!(out.is_empty());
        assert!(g.is_empty());
    }

    #[test]
    fn other_actors_rules_hosts_and_targets_are_other_groups() {
        let mut g = FindingGroups::new(&section(60, 4096));
        let t0 = Instant::now();
        let mut out = Vec::new();
        g.offer(tamper(1, 1), at(0), t0, &mut out);
        g.offer(tamper(2, 1), at(0), t0, &mut out);
        let mut other_host = tamper(1, 1);
        other_host["host"]["name"] = json!("web2");
        g.offer(other_host, at(0), t0, &mut out);
        let mut other_rule = tamper(1, 1);
        other_rule["rule"]["id"] = json!("ringfence-tamper-bpf");
        g.offer(other_rule, at(0), t0, &mut out);
        let mut reused_pid = tamper(1, 1);
        reused_pid["process"]["start"] = json!("2026-12-06T05:00:00Z");
        g.offer(reused_pid, at(0), t0, &mut out);
        assert_eq!(out.len(), 5);
        // An exec's actor is its parent, its target the command line.
        g.offer(exec(10, "sh -c id"), at(0), t0, &mut out);
        g.offer(exec(10, "sh -c id"), at(1), t0, &mut out);
        g.offer(exec(10, "sh -c whoami"), at(1), t0, &mut out);
        g.offer(exec(11, "sh -c id"), at(1), t0, &mut out);
        assert_eq!(out.len(), 8);
        assert_eq!(g.folded, 1);
        // A file rule's target is the file.
        let file = |path: &str| {
            json!({"event": {"kind": "alert", "action": "modify"}, "rule": {"id": "f"},
                   "process": {"pid": 5}, "file": {"path": path}})
        };
        g.offer(file("/etc/shadow"), at(0), t0, &mut out);
        g.offer(file("/etc/passwd"), at(0), t0, &mut out);
        g.offer(file("/etc/shadow"), at(0), t0, &mut out);
        assert_eq!(out.len(), 10);
    }

    #[test]
    fn a_full_table_closes_the_oldest_group_early_and_counts_it() {
        let mut g = FindingGroups::new(&section(60, 2));
        let t0 = Instant::now();
        let mut out = Vec::new();
        g.offer(tamper(1, 1), at(0), t0, &mut out);
        g.offer(tamper(1, 2), at(1), t0, &mut out);
        g.offer(tamper(2, 1), at(2), t0, &mut out);
        assert_eq!(out.len(), 2);
        g.offer(tamper(3, 1), at(3), t0, &mut out);
        // Pid 1's group folded one, so its summary left early; pid 3's finding left at once.
        assert_eq!(out.len(), 4);
        assert_eq!(out[2]["ringfence"]["finding"]["count"], 2);
        assert_eq!(out[2]["process"]["pid"], 1);
        assert_eq!(out[3]["process"]["pid"], 3);
        assert_eq!(g.evictions, 1);
        assert_eq!(g.len(), 2);
        // Closing everything on stop: groups of one have nothing more to say.
        g.offer(tamper(3, 2), at(4), t0, &mut out);
        out.clear();
        g.close_all(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["process"]["pid"], 3);
        assert!(g.is_empty());
    }

    #[test]
    fn a_zero_window_and_health_reports_pass_through() {
        let mut off = FindingGroups::new(&section(0, 4096));
        let t0 = Instant::now();
        let mut out = Vec::new();
        for _ in 0..3 {
            off.offer(tamper(1, 1), at(0), t0, &mut out);
        }
        assert_eq!(out.len(), 3);
        let mut on = FindingGroups::new(&section(60, 4096));
        out.clear();
        for _ in 0..3 {
            on.offer(
                json!({"event": {"kind": "metric"}, "message": "x"}),
                at(0),
                t0,
                &mut out,
            );
        }
        assert_eq!(out.len(), 3);
        assert!(on.is_empty());
    }

    #[test]
    fn key_parts_are_bounded() {
        let long = "é".repeat(4000);
        let k = GroupKey::of(&exec(1, &long));
        assert!(k.target.len() < KEY_PART_MAX * 2);
        // Two command lines differing only past the cut are one target.
        let mut other = long.clone();
        other.push('x');
        assert_eq!(k, GroupKey::of(&exec(1, &other)));
    }

    #[test]
    fn bounds_are_checked() {
        assert!(FindingsSection::default().problems().is_empty());
        assert_eq!(section(3601, 1).problems().len(), 1);
        assert_eq!(section(60, 0).problems().len(), 1);
        assert_eq!(section(60, 65_537).problems().len(), 1);
    }
}
