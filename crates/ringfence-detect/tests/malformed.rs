//! Bad rules are refused with the file, line, rule id and field named, and never stop the good
//! rules beside them from loading.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use ringfence_detect::{Options, RuleFile, compile};
use ringfence_event::Mode;

const GOOD: &str = "title: good\nid: good-1\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  sel:\n    Image|endswith: /nc\n  condition: sel\nlevel: high\n";

fn rule(id: &str, detection: &str) -> String {
    format!(
        "title: {id}\nid: {id}\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n{detection}\nlevel: high\n"
    )
}

/// Compiles `bad` beside a good rule; returns the refusals (the good rule must load).
fn refusals(bad: &str) -> Vec<ringfence_detect::Refusal> {
    let files = [
        RuleFile {
            path: "good.yml",
            text: GOOD,
        },
        RuleFile {
            path: "bad.yml",
            text: bad,
        },
    ];
    let out = compile(&files, &Options::new(Mode::Ebpf));
    assert!(
        out.engine.rules().iter().any(|r| r.meta.id == "good-1"),
        "the good rule did not load beside {bad:.80}"
    );
    out.refusals
        .into_iter()
        .filter(|r| r.file == "bad.yml")
        .collect()
}

fn assert_refused(bad: &str, line: u32, field: Option<&str>, needle: &str) {
    let r = refusals(bad);
    assert_eq!(r.len(), 1, "{r:#?}");
    let r = &r[0];
    assert_eq!(r.line, Some(line), "{r}");
    assert_eq!(r.field.as_deref(), field, "{r}");
    assert!(r.message.contains(needle), "`{needle}` not in: {r}");
}

#[test]
fn unknown_field() {
    let bad = rule(
        "bad-1",
        "  sel:\n    Imagee|endswith: /sh\n  condition: sel",
    );
    assert_refused(&bad, 8, Some("Imagee"), "no mapping");
}

#[test]
fn field_no_source_fills() {
    // `file.mode` is in the schema for file events, but no source reads it yet.
    let bad = "title: x\nid: bad-2\nlogsource:\n  product: linux\n  category: file_event\ndetection:\n  sel:\n    file.mode: '4755'\n  condition: sel\n";
    assert_refused(bad, 8, Some("file.mode"), "no ebpf source fills");
}

#[test]
fn wrong_value_type() {
    let bad = "title: x\nid: bad-3\nlogsource:\n  product: linux\n  category: network_connection\ndetection:\n  sel:\n    DestinationPort: https\n  condition: sel\n";
    assert_refused(bad, 8, Some("DestinationPort"), "not an integer");
    let bad = rule("bad-3b", "  sel:\n    CommandLine|gt: 5\n  condition: sel");
    assert_refused(&bad, 8, Some("CommandLine"), "numeric field");
}

#[test]
fn unknown_modifier() {
    let bad = rule("bad-4", "  sel:\n    Image|sideways: /sh\n  condition: sel");
    assert_refused(&bad, 8, None, "sideways");
}

#[test]
fn regex_over_the_size_limit() {
    let bad = rule(
        "bad-5",
        "  sel:\n    CommandLine|re: '(a{1000}){1000}'\n  condition: sel",
    );
    assert_refused(&bad, 8, Some("CommandLine"), "regular expression");
}

#[test]
fn huge_rule_file() {
    let mut bad = rule("bad-6", "  sel:\n    Image: /x\n  condition: sel");
    bad.push_str(&"# padding\n".repeat(110_000));
    let r = refusals(&bad);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert!(r[0].message.contains("limit"), "{}", r[0]);
}

#[test]
fn deeply_nested_yaml() {
    let bad = format!(
        "title: x\nid: bad-7\ndetection: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let r = refusals(&bad);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert_eq!(r[0].line, Some(3));
    assert!(r[0].message.contains("nested"), "{}", r[0]);
}

#[test]
fn truncated_and_malformed_yaml() {
    let full = rule("bad-8", "  sel:\n    Image|endswith: /sh\n  condition: sel");
    let cut = &full[..full.len() / 2];
    let r = refusals(cut);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert!(r[0].line.is_some());
    let r = refusals("title: [unclosed\nid: x\n");
    assert_eq!(r.len(), 1, "{r:#?}");
}

#[test]
fn duplicate_rule_ids() {
    let files = [
        RuleFile {
            path: "good.yml",
            text: GOOD,
        },
        RuleFile {
            path: "again.yml",
            text: GOOD,
        },
    ];
    let out = compile(&files, &Options::new(Mode::Ebpf));
    assert_eq!(out.engine.rules().len(), 1);
    assert_eq!(out.refusals.len(), 1);
    assert_eq!(out.refusals[0].file, "again.yml");
    assert!(
        out.refusals[0].message.contains("duplicate rule id"),
        "{}",
        out.refusals[0]
    );
}

#[test]
fn correlation_to_a_missing_rule() {
    let bad = "title: c\nid: corr-1\ncorrelation:\n  type: event_count\n  rules:\n    - nowhere\n  group-by:\n    - User\n  timespan: 5m\n  condition:\n    gte: 3\n";
    let r = refusals(bad);
    assert_eq!(r.len(), 1, "{r:#?}");
    assert!(r[0].message.contains("nowhere"), "{}", r[0]);
    assert_eq!(r[0].line, Some(6));
}

#[test]
fn unknown_response_action() {
    let bad = format!(
        "{}response:\n    - kill_tre\n",
        rule("bad-r", "  sel:\n    Image|endswith: /sh\n  condition: sel")
    );
    assert_refused(&bad, 11, None, "unknown action \"kill_tre\"");
}

#[test]
fn requested_responses_travel_with_the_finding() {
    let text = format!("{GOOD}response: [kill_tree, quarantine]\n");
    let out = compile(
        &[RuleFile {
            path: "r.yml",
            text: &text,
        }],
        &Options::new(Mode::Ebpf),
    );
    assert!(out.refusals.is_empty(), "{:#?}", out.refusals);
    let meta = &out.engine.rules()[0].meta;
    let mut e = ringfence_event::Event::new(
        ringfence_event::EventKind::ProcessExec,
        ringfence_event::SourceKind::Ebpf,
        ringfence_event::Timestamp::now(),
    );
    e.process = Some(ringfence_event::Process {
        pid: 4242,
        executable: Some("/usr/bin/nc".into()),
        ..Default::default()
    });
    let f = ringfence_detect::Finding {
        meta,
        event: &e,
        correlation: None,
    }
    .to_ecs();
    assert_eq!(
        f["ringfence"]["finding"]["response"],
        serde_json::json!(["kill_tree", "quarantine"])
    );
}

#[test]
fn an_output_template_travels_with_the_finding_and_a_bad_one_is_refused() {
    let text = format!("{GOOD}output: \"nc %process.command_line run by %user.name\"\n");
    let out = compile(
        &[RuleFile {
            path: "r.yml",
            text: &text,
        }],
        &Options::new(Mode::Ebpf),
    );
    assert!(out.refusals.is_empty(), "{:#?}", out.refusals);
    let meta = &out.engine.rules()[0].meta;
    let e = ringfence_event::Event::new(
        ringfence_event::EventKind::ProcessExec,
        ringfence_event::SourceKind::Ebpf,
        ringfence_event::Timestamp::now(),
    );
    let f = ringfence_detect::Finding {
        meta,
        event: &e,
        correlation: None,
    }
    .to_ecs();
    assert_eq!(
        f["ringfence"]["finding"]["output"],
        "nc %process.command_line run by %user.name"
    );

    let bad = format!(
        "{}output: [not, a, string]\n",
        rule("bad-o", "  sel:\n    Image|endswith: /sh\n  condition: sel")
    );
    assert_refused(&bad, 11, None, "output: expected a string template");
}
