//! An agent release file (`ringfence release build`) reaches the agent from a console or an
//! operator: untrusted bytes that, accepted, choose the binary the agent runs next. Every input
//! is parsed and refused without a panic; the fixture root (`fixtures/root.json`) has no
//! `releases` role, so nothing may ever be accepted against it, however well-formed.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfence_content::release::{claimed_version, verify_release};
use ringfence_content::{TrustedRoot, UnixTime};

const ROOT: &[u8] = include_bytes!("../fixtures/root.json");
const NOW: UnixTime = UnixTime(1_800_000_060);

fn root() -> &'static TrustedRoot {
    static ROOT_ONCE: OnceLock<TrustedRoot> = OnceLock::new();
    ROOT_ONCE.get_or_init(|| TrustedRoot::from_bytes(ROOT).expect("fixture root is valid"))
}

fuzz_target!(|data: &[u8]| {
    // The CLI's unverified read of the claimed version: any answer, never a panic.
    let _ = claimed_version(data);
    assert!(
        verify_release(data, root(), NOW).is_err(),
        "a release accepted by a root without a releases role"
    );
});
