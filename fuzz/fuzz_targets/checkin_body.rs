//! What an agent sends the console as its check-in: every body parses or is refused, nothing
//! panics, and a parsed check-in is within its bounds (its sensor hooks at most
//! `limits::SENSOR_HOOKS` kinds of labels of at most `limits::LABEL_BYTES`) and round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_wire::{CheckIn, limits};

fuzz_target!(|data: &[u8]| {
    let Ok(checkin) = CheckIn::parse(data) else {
        return;
    };
    let hooks = &checkin.sensor_hooks;
    assert!(hooks.kinds.len() <= limits::SENSOR_HOOKS);
    for (kind, hook) in hooks.kinds.iter() {
        assert!(kind.as_str().len() <= limits::LABEL_BYTES);
        assert!(hook.as_str().len() <= limits::LABEL_BYTES);
    }
    let Ok(again) = serde_json::to_vec(&checkin) else {
        return;
    };
    if let Ok(back) = CheckIn::parse(&again) {
        assert_eq!(back.sensor_hooks, checkin.sensor_hooks);
    }
});
