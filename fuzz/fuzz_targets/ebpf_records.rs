//! eBPF ring-buffer records: decoding must never panic whatever the bytes, and every record
//! that decodes must convert to an event whose ECS line parses back (what the agent writes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_event::Event;
use ringfence_sensor::ebpf::{convert, decode};
use ringfence_sensor::sys::Clocks;

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = decode(data) {
        let event = convert::to_event(rec, &Clocks::default());
        let line = event.to_ecs_line();
        if let Err(e) = Event::from_ecs_line(&line) {
            panic!("a decoded record's event does not parse back: {e}: {line}");
        }
    }
});
