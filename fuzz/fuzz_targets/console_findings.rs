//! What an agent's finding says, read by the console to show a person: the one-sentence
//! summary, the process ancestry, the ATT&CK names and the rule's text, from any JSON an agent
//! uploads; and the cursors and filters an operator's query string carries. Nothing panics,
//! the ancestry stays bounded, and every ATT&CK link points at attack.mitre.org.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_console::finding_view;
use ringfence_console::findings::Cursor;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = Cursor::parse(s)
    {
        assert_eq!(Cursor::parse(&c.to_string()).ok(), Some(c));
    }
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = finding_view::sentence(&body, "host");
    let tree = finding_view::ancestry(&body);
    assert!(tree.len() <= 18);
    let (tactics, techniques) = finding_view::attack(&body);
    for a in tactics.iter().chain(&techniques) {
        assert!(a.url.starts_with("https://attack.mitre.org/"));
    }
    let _ = finding_view::rule(&body);
});
