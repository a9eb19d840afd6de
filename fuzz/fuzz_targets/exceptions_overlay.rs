//! A bundle's exceptions overlay (entry kind 5) is parsed at build, on the console before
//! signing and on every agent at load: every input is either exceptions or a list of errors
//! naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_agent::tuning::parse_overlay;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let files = [("exceptions/fuzz.toml", text)];
        match parse_overlay(&files, &|id: &str| id.len() % 2 == 0) {
            Ok(exceptions) => assert!(exceptions.len() <= ringfence_agent::tuning::MAX_ENTRIES),
            Err(errors) => {
                assert!(!errors.is_empty());
                assert!(errors.iter().all(|e| e.file == "exceptions/fuzz.toml"));
            }
        }
    }
});
