//! The OCSF file: each finding as an OCSF 1.3 Detection Finding (class_uid 2004) JSON line,
//! in a file rotated by size (`PATH.1` … `PATH.keep`). Built from the ECS finding the
//! pipeline carries, in the shape `ringfence-detect`'s OCSF form has.

use serde_json::{Map, Value, json};

use super::file::Jsonl;
use super::queue::{SendError, Sink};

fn severity(level: &str) -> (u8, &'static str) {
    match level {
        "INFORMATIONAL" => (1, "Informational"),
        "LOW" => (2, "Low"),
        "MEDIUM" => (3, "Medium"),
        "HIGH" => (4, "High"),
        "CRITICAL" => (5, "Critical"),
        _ => (0, "Unknown"),
    }
}

fn time_ms(f: &Value, key: &str) -> Option<i64> {
    let t = f.pointer(key).and_then(Value::as_str)?;
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The OCSF Detection Finding for an ECS finding.
pub fn detection_finding(f: &Value) -> Value {
    let (sev_id, sev) = severity(&super::text::severity(f));
    let time = time_ms(f, "/@timestamp").unwrap_or(0);
    let rule_id = f.pointer("/rule/id").cloned().unwrap_or(Value::Null);
    let title = f.pointer("/rule/name").cloned().unwrap_or(Value::Null);
    let mut attacks: Vec<Value> = Vec::new();
    if let Some(Value::Array(ts)) = f.pointer("/threat/technique/id") {
        attacks.extend(
            ts.iter()
                .map(|t| json!({"technique": {"uid": t}, "version": "15"})),
        );
    }
    if let Some(Value::Array(ts)) = f.pointer("/threat/tactic/name") {
        attacks.extend(
            ts.iter()
                .map(|t| json!({"tactic": {"name": t}, "version": "15"})),
        );
    }
    let mut evidence = Map::new();
    if let Some(p) = f.get("process") {
        let parent = p.get("parent").map(|q| {
            json!({
                "pid": q.get("pid"),
                "name": q.get("name"),
                "file": {"path": q.get("executable")},
                "cmd_line": q.get("command_line"),
            })
        });
        evidence.insert(
            "process".into(),
            json!({
                "pid": p.get("pid"),
                "name": p.get("name"),
                "cmd_line": p.get("command_line"),
                "file": {"path": p.get("executable")},
                "parent_process": parent,
                "user": {"name": f.pointer("/user/name"), "uid": f.pointer("/user/id")},
            }),
        );
    }
    if let Some(path) = f.pointer("/file/path") {
        evidence.insert("file".into(), json!({"path": path}));
    }
    if let Some(ip) = f.pointer("/destination/ip") {
        evidence.insert(
            "dst_endpoint".into(),
            json!({"ip": ip, "port": f.pointer("/destination/port")}),
        );
    }
    let uid = format!(
        "{}:{}:{}",
        rule_id.as_str().unwrap_or(""),
        f.get("@timestamp").and_then(Value::as_str).unwrap_or(""),
        f.pointer("/process/pid")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    );
    let mut doc = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": sev_id,
        "severity": sev,
        "status_id": 1,
        "status": "New",
        "time": time,
        "message": super::text::line(f),
        "metadata": {
            "version": "1.3.0",
            "product": {"name": "Ringfence", "vendor_name": "Ringfence"},
            "uid": uid,
        },
        "device": {"hostname": f.pointer("/host/name"), "type_id": 0},
        "finding_info": {
            "uid": uid,
            "title": title,
            "desc": f.pointer("/rule/description"),
            "analytic": {"uid": rule_id, "name": title, "type_id": 1, "type": "Rule"},
            "attacks": attacks,
        },
        "evidences": [Value::Object(evidence)],
        "unmapped": {"ecs": f},
    });
    if let Some(n) = f
        .pointer("/ringfence/finding/count")
        .and_then(Value::as_u64)
    {
        doc["count"] = json!(n);
        if let Some(t) = time_ms(f, "/event/start") {
            doc["start_time"] = json!(t);
        }
        if let Some(t) = time_ms(f, "/event/end") {
            doc["end_time"] = json!(t);
        }
    }
    doc
}

/// The rotating OCSF file.
pub struct OcsfFile {
    file: Jsonl,
}

impl OcsfFile {
    pub fn open(path: &std::path::Path, rotate_bytes: u64, keep: u32) -> Result<OcsfFile, String> {
        Jsonl::open(path, rotate_bytes, keep)
            .map(|file| OcsfFile { file })
            .map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Sink for OcsfFile {
    fn send(&mut self, batch: &[Value]) -> Result<(), SendError> {
        use super::Output;
        for f in batch {
            self.file
                .write_line(&detection_finding(f).to_string())
                .map_err(|e| SendError::Retry(format!("{}: {e}", self.file.name())))?;
        }
        self.file
            .flush()
            .map_err(|e| SendError::Retry(format!("{}: {e}", self.file.name())))
    }

    fn max_batch(&self) -> usize {
        500
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ecs_finding_becomes_a_detection_finding() {
        let f = json!({
            "@timestamp": "2026-12-06T07:00:00.000Z",
            "host": {"name": "web-3"},
            "process": {"pid": 42, "command_line": "sh -c id", "parent": {"name": "nginx"}},
            "rule": {"id": "r1", "name": "Shell"},
            "threat": {"technique": {"id": ["T1059.004"]}, "tactic": {"name": ["execution"]}},
            "ringfence": {"finding": {"level": "critical", "count": 3}},
            "event": {"start": "2026-12-06T06:59:00.000Z", "end": "2026-12-06T07:00:00.000Z"},
        });
        let o = detection_finding(&f);
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["type_uid"], 200401);
        assert_eq!(o["severity_id"], 5);
        assert_eq!(o["time"], 1_796_540_400_000i64);
        assert_eq!(o["metadata"]["version"], "1.3.0");
        assert_eq!(o["finding_info"]["analytic"]["uid"], "r1");
        assert_eq!(
            o["finding_info"]["attacks"][0]["technique"]["uid"],
            "T1059.004"
        );
        assert_eq!(o["evidences"][0]["process"]["cmd_line"], "sh -c id");
        assert_eq!(o["device"]["hostname"], "web-3");
        assert_eq!(o["count"], 3);
        assert_eq!(o["start_time"], 1_796_540_340_000i64);
    }
}
