//! The Sigma compiler sees user-supplied rule files: every input compiles or is refused with a
//! reason naming the file, in both sensor modes, and whatever compiles evaluates an event
//! without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_detect::{Options, RuleFile, compile};
use ringfence_event::{Event, Mode};

const EVENT: &str = r#"{"@timestamp":"2026-11-22T16:05:29Z","event":{"action":"exec","category":"process","kind":"event","type":"start"},"process":{"pid":7,"executable":"/usr/bin/bash","name":"bash","command_line":"bash -c id","args":["bash","-c","id"],"parent":{"pid":1,"executable":"/usr/sbin/nginx"}},"user":{"id":"0","name":"root"}}"#;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files = [RuleFile {
        path: "fuzz.yml",
        text,
    }];
    for mode in Mode::ALL {
        let out = compile(&files, &Options::new(mode));
        for r in &out.refusals {
            assert_eq!(r.file, "fuzz.yml", "{r}");
            assert!(!r.message.is_empty());
        }
        if let Ok(event) = Event::from_ecs_line(EVENT) {
            let mut state = out.engine.new_state();
            out.engine.evaluate(&event, &mut state, &mut |h| {
                if let Some(f) = out.engine.finding(&h, &event) {
                    let _ = f.to_json(ringfence_detect::Format::Ecs);
                }
            });
        }
    }
});
