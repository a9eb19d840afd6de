//! DNS-over-UDP packets as the capture socket hands them over: anyone on the network can send
//! a DNS answer, so the IP, UDP and DNS parsers must never panic, and what they keep is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::dns::parse::{MAX_ANSWERS, parse_message, parse_packet};

fuzz_target!(|data: &[u8]| {
    for msg in [parse_message(data), parse_packet(data).map(|p| p.message)]
        .into_iter()
        .flatten()
    {
        assert!(msg.addresses.len() <= MAX_ANSWERS);
        // 255 wire bytes, each escaped to at most four characters.
        assert!(msg.name.len() <= 4 * 255);
    }
});
