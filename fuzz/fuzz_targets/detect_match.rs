//! The matcher sees what the host does (command lines, paths, log lines an attacker controls):
//! the default content pack plus a rule set exercising every modifier evaluate any event
//! without panicking, findings render in both forms, correlation state stays bounded, and the
//! index (kind folding, literals, the joined scan) finds exactly the rules that evaluating each
//! rule alone finds.
//!
//! The input is an ECS JSON event; when it is not one, its lines become the text fields of an
//! exec event, a file event and a log line, so raw bytes reach the matchers too.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfence_detect::{Engine, Format, Hit, Options, RuleFile, compile};
use ringfence_event::{Event, Mode};
use serde_json::json;

const MODIFIERS: &str = r#"
title: every modifier
id: 0f0f0f0f-0000-4000-8000-000000000001
logsource: {product: linux, category: process_creation}
detection:
  a: {CommandLine|contains|all: [' -c ', 'sh']}
  b: {Image|endswith: ['/sh', '/bash'], Image|startswith: '/usr/'}
  c: {CommandLine|re|i: '(curl|wget).+\|\s*(ba)?sh'}
  d: {CommandLine|base64offset|contains: 'bash -i'}
  e: {CommandLine|windash|contains: '-enc'}
  f: {User|cased: Root, CurrentDirectory|neq: '/'}
  g: {ProcessId|gt: 100, ParentProcessId|lte: 1}
  h: {CommandLine: 'a*b?c\*'}
  i: {ParentCommandLine: null, CurrentDirectory|exists: true}
  j: {Image|fieldref: ParentImage}
  k: {CommandLine|utf16le|base64|contains: 'x'}
  l: {CommandLine|re: 'x[0-9]+ longer (one|two)', ParentCommandLine|contains: 'zzz*yyy'}
  condition: 1 of a* or (b and not c) or all of d* or e or f or g or h or i or j or k or l
---
title: network
id: 0f0f0f0f-0000-4000-8000-000000000002
logsource: {product: linux, category: network_connection}
detection:
  s: {DestinationIp|cidr: ['10.0.0.0/8', 'fd00::/8'], DestinationPort|lt: 1024, Initiated: 'true'}
  condition: s
---
title: many execs
id: 0f0f0f0f-0000-4000-8000-000000000003
correlation:
  type: value_count
  rules: [0f0f0f0f-0000-4000-8000-000000000001]
  group-by: [User]
  timespan: 1m
  condition: {gte: 2, field: CommandLine}
"#;

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../content/linux/rules");
        let mut texts = vec![("modifiers.yml".to_owned(), MODIFIERS.to_owned())];
        let mut stack = vec![std::path::PathBuf::from(dir)];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(t) = std::fs::read_to_string(&p) {
                    texts.push((p.display().to_string(), t));
                }
            }
        }
        let files: Vec<RuleFile<'_>> = texts
            .iter()
            .map(|(p, t)| RuleFile { path: p, text: t })
            .collect();
        compile(&files, &Options::new(Mode::Ebpf)).engine
    })
}

fn events(data: &[u8]) -> Vec<Event> {
    let text = String::from_utf8_lossy(data);
    if let Ok(e) = Event::from_ecs_line(&text) {
        return vec![e];
    }
    let mut parts = text.split('\n');
    let mut next = || parts.next().unwrap_or("").to_owned();
    let (cmd, exe, parent, path, message) = (next(), next(), next(), next(), next());
    let docs = [
        json!({"@timestamp": "2026-11-22T16:05:29Z", "event": {"action": "exec", "kind": "event"},
               "process": {"pid": 9, "executable": exe, "command_line": cmd, "args": cmd.split(' ').collect::<Vec<_>>(),
                           "parent": {"pid": 1, "executable": parent, "command_line": parent}},
               "user": {"name": "root", "id": "0"}}),
        json!({"@timestamp": "2026-11-22T16:05:30Z", "event": {"action": "create", "kind": "event"},
               "file": {"path": path}, "process": {"pid": 9, "executable": exe}}),
        json!({"@timestamp": "2026-11-22T16:05:31Z", "event": {"action": "log", "kind": "event"},
               "message": message, "service": {"name": "sshd"}}),
    ];
    docs.iter().filter_map(|d| Event::from_ecs(d).ok()).collect()
}

fuzz_target!(|data: &[u8]| {
    let engine = engine();
    let mut state = engine.new_state();
    for event in events(data) {
        let mut indexed = Vec::new();
        engine.evaluate(&event, &mut state, &mut |h| {
            if let Hit::Rule(r) = h {
                indexed.push(r);
            }
        });
        let alone: Vec<usize> = (0..engine.rules().len())
            .filter(|&r| engine.rules()[r].generate && engine.rules()[r].matches(&event))
            .collect();
        assert_eq!(indexed, alone);
        for _ in 0..3 {
            engine.evaluate(&event, &mut state, &mut |h| {
                if let Some(f) = engine.finding(&h, &event) {
                    let _ = f.to_json(Format::Ecs);
                    let _ = f.to_json(Format::Ocsf);
                }
            });
        }
    }
    assert!(state.groups() <= 10_000 * engine.correlations().len().max(1));
});
