//! fanotify FID records: the parser must never panic, and what it accepts must re-encode to
//! an event it parses the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::fanotify::parse::{encode_event, parse_events};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = parse_events(data, &mut out);
    for e in &out {
        let again = encode_event(e.mask, e.pid, &e.infos);
        let mut back = Vec::new();
        if parse_events(&again, &mut back).is_ok() {
            assert_eq!(back.len(), 1);
            assert_eq!(back[0].mask, e.mask);
            assert_eq!(back[0].infos.len(), e.infos.len());
        }
    }
});
