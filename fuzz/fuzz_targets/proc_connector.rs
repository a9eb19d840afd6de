//! Process connector datagrams: parsing and conversion to events must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::proc_connector::{GapTracker, parse_datagram, seq_of, to_event};
use ringfence_sensor::sys::Clocks;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(ev)) = parse_datagram(data) {
        let _ = to_event(&ev, &Clocks::default());
        if let Some((cpu, seq)) = seq_of(&ev) {
            let mut g = GapTracker::default();
            let _ = g.observe(cpu, seq);
            let _ = g.observe(cpu, seq.wrapping_add(1));
        }
    }
});
