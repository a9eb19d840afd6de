//! Every field exercised (the Channel File 291 lesson: input 21 was never read by a test).
//!
//! For every field of the schema and every mode that fills it, a rule matching that field with
//! a concrete value (no wildcard) is compiled for that mode and must match an event carrying
//! the value and not match the same event with the value changed. A new field that the engine
//! cannot read, or that the schema claims a mode fills but the compiler refuses, fails here.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failure is the test failing"
)]

use ringfence_detect::{Options, RuleFile, compile};
use ringfence_event::{Event, EventKind, Field, FieldType, Mode, Value};
use serde_json::{Value as Json, json};

fn set(doc: &mut Json, dotted: &str, v: Json) {
    let mut cur = doc;
    let parts: Vec<&str> = dotted.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .as_object_mut()
            .unwrap()
            .entry(p.to_string())
            .or_insert_with(|| json!({}));
    }
    cur.as_object_mut()
        .unwrap()
        .insert(parts[parts.len() - 1].to_string(), v);
}

fn sample(f: Field, variant: u8) -> Json {
    match f.ty() {
        FieldType::Keyword => match f.name() {
            "file.path"
            | "file.original.path"
            | "process.executable"
            | "process.parent.executable" => {
                json!(format!("/opt/rf/sample{variant}.bin"))
            }
            "file.mode" => json!(if variant == 0 { "4755" } else { "0644" }),
            "file.hash.sha256" => json!(format!("{:064x}", 0xabc + u64::from(variant))),
            "network.transport" => json!(if variant == 0 { "tcp" } else { "udp" }),
            "network.direction" => json!(if variant == 0 { "egress" } else { "ingress" }),
            "event.outcome" => json!(if variant == 0 { "success" } else { "failure" }),
            "ringfence.source" => json!(if variant == 0 { "ebpf" } else { "audit" }),
            "ringfence.bpf.command" => json!(if variant == 0 {
                "prog_load"
            } else {
                "map_create"
            }),
            "ringfence.bpf.program_type" => json!(if variant == 0 { "kprobe" } else { "xdp" }),
            "ringfence.memory.protection" => json!(if variant == 0 { "rwx" } else { "r-x" }),
            _ => json!(format!("rf-sample-{variant}")),
        },
        FieldType::Long => json!(4242 + i64::from(variant)),
        FieldType::Ip => json!(format!("203.0.113.{}", 9 + variant)),
        FieldType::Boolean => json!(variant == 0),
        FieldType::Date => json!(format!("2026-01-0{}T00:00:00Z", 1 + variant)),
        FieldType::KeywordList => json!([format!("/opt/rf/sample{variant}.bin"), "x"]),
        FieldType::LongList => json!([4242 + i64::from(variant), 1]),
    }
}

/// An event of `kind` with every settable field filled; `variant` changes the values.
fn event(kind: EventKind, variant: u8) -> Option<Event> {
    let mut doc = json!({"@timestamp": "2026-11-22T10:00:00Z"});
    set(&mut doc, "event.action", json!(kind.action()));
    for f in Field::ALL {
        let spec = f.spec();
        if spec.derived
            || f.name() == "event.action"
            || f.name() == "@timestamp"
            || !spec.kinds.contains(kind)
        {
            continue;
        }
        set(&mut doc, f.name(), sample(*f, variant));
    }
    Event::from_ecs(&doc).ok()
}

fn concrete(v: Value<'_>) -> Option<String> {
    Some(match v {
        Value::Str(s) => s.to_owned(),
        Value::Int(i) => i.to_string(),
        Value::Ip(ip) => ip.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Time(_) => return None,
        Value::StrList(l) => l.first()?.clone(),
        Value::IntList(l) => l.first()?.to_string(),
    })
}

#[test]
fn every_field_is_matched_with_a_concrete_value_in_every_mode_that_fills_it() {
    let mut checked = 0;
    let mut missing = Vec::new();
    for f in Field::ALL {
        if f.ty() == FieldType::Date {
            // Dates are compared as times, not matched as values; nothing to exercise.
            continue;
        }
        for mode in Mode::ALL {
            let Some(kind) = f.spec().filled_in(mode).iter().next() else {
                continue;
            };
            let (Some(pos), Some(neg)) = (event(kind, 0), event(kind, 1)) else {
                missing.push(format!(
                    "{f} ({mode:?}): cannot build a {} event",
                    kind.action()
                ));
                continue;
            };
            let Some(value) = f.get(&pos).and_then(concrete) else {
                missing.push(format!("{f} ({mode:?}): the event has no value for it"));
                continue;
            };
            let category = kind.action().replace('-', "_");
            let rule = format!(
                "title: exercise {f}\nid: exercise-{f}\nlogsource:\n  product: linux\n  category: {category}\ndetection:\n  sel:\n    {f}: '{}'\n  condition: sel\nlevel: low\n",
                value.replace('\'', "''")
            );
            let files = [RuleFile {
                path: "exercise.yml",
                text: &rule,
            }];
            let out = compile(&files, &Options::new(mode));
            if !out.refusals.is_empty() {
                missing.push(format!("{f} ({mode:?}): refused: {}", out.refusals[0]));
                continue;
            }
            let r = &out.engine.rules()[0];
            if !r.matches(&pos) {
                missing.push(format!(
                    "{f} ({mode:?}): `{value}` did not match its own event"
                ));
            }
            if r.matches(&neg) && f.get(&neg).and_then(concrete).as_deref() != Some(&value) {
                missing.push(format!("{f} ({mode:?}): matched a different value"));
            }
            checked += 1;
        }
    }
    assert!(
        missing.is_empty(),
        "fields not exercised:\n{}",
        missing.join("\n")
    );
    assert!(checked > 60, "only {checked} field/mode pairs");
}
