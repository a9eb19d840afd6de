//! A finding's text line is built from a console's or an agent's JSON (a hostile agent's
//! command line, `findings tail`) and a rule's `output` template: every input gives one line,
//! bounded, with no control character, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_agent::outputs::text;

fuzz_target!(|data: &[u8]| {
    // The first line is a template, the rest a finding.
    let (template, doc) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(mut finding) = serde_json::from_slice::<serde_json::Value>(doc) else {
        return;
    };
    if let (Ok(t), Some(obj)) = (std::str::from_utf8(template), finding.as_object_mut()) {
        obj.insert(
            "ringfence".into(),
            serde_json::json!({"finding": {"output": t, "level": "high"}}),
        );
    }
    let line = text::line(&finding);
    assert!(line.chars().count() <= text::MAX_LINE_CHARS + 1);
    assert!(!line.chars().any(char::is_control));
    let _ = ringfence_agent::outputs::syslog::message(&finding, 16, true);
    let _ = ringfence_agent::outputs::ocsf::detection_finding(&finding);
});
