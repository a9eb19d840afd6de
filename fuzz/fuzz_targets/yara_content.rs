//! A bundle's YARA entries are untrusted until verified and are compiled again at load: the
//! sample parser and the yara-x compile step take any bytes and give rules or errors naming
//! a file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_content::yara;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match yara::parse_samples("yara/f.tests", text) {
            Ok(samples) => assert!(samples.iter().all(|s| s.line > 0)),
            Err(errors) => assert!(errors.iter().all(|e| e.file == "yara/f.tests")),
        }
    }
    if let Err(errors) = yara::compile([("yara/f.yar", data)]) {
        assert!(!errors.is_empty());
    }
});
