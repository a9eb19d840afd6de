//! The agent's config parser sees operator-written (untrusted) text: every input is either a
//! config or a list of errors, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ringfence_agent::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(errors) = Config::parse(text, Path::new("fuzz.toml")) {
            assert!(!errors.0.is_empty());
        }
    }
});
