//! /proc/PID/stat and status text: a process names itself (comm), so these parsers must never
//! panic, and a `stat` that parses keeps the name whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::proc_info::{parse_stat, parse_status};

fuzz_target!(|data: &[u8]| {
    let _ = parse_status(data);
    if let Some(stat) = parse_stat(data) {
        assert!(stat.comm.len() <= data.len() * 3);
    }
});
