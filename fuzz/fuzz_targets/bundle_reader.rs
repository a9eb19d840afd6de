//! The bundle reader sees untrusted bytes (a bundle payload, or a stored file on disk): every
//! input is a bundle or an error, never a panic, and a bundle it accepts has exactly one byte
//! form, so re-encoding it gives back the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_content::{Bundle, Limits};

fuzz_target!(|data: &[u8]| {
    // Small limits too, so the fuzzer reaches every limit check with small inputs.
    let small = Limits {
        max_file_bytes: 64,
        max_total_bytes: 4096,
        max_entries: 8,
        max_path_bytes: 32,
    };
    for limits in [Limits::default(), small] {
        if let Ok(bundle) = Bundle::decode(data, &limits) {
            assert_eq!(bundle.encode(), data, "canonical encoding round trip");
            assert_eq!(Bundle::decode(data, &limits).ok(), Some(bundle));
        }
    }
});
