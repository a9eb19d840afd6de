//! A maintenance token is the signed order that disarms, stops or uninstalls a tamper-protected
//! agent, so its verifier sees untrusted bytes with the most at stake. Every input is verified
//! or refused; nothing panics, and nothing but the fixture's own signed claims (from
//! `fixtures/`, signed by both root v1 keys) is ever accepted, whatever the JSON spelling.
//! Regenerate `fixtures/` and the seeds with
//! `cargo run -p ringfence-content --example fuzz_fixtures -- fuzz/`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfence_content::{MaintenanceClaims, TrustedRoot, UnixTime, verify_maintenance_token};

const ROOT: &[u8] = include_bytes!("../fixtures/root.json");
const TOKEN: &[u8] = include_bytes!("../fixtures/maintenance.token");
const HOST: &str = "fuzz-host";
/// A minute after the fixture token was issued, within its hour of validity.
const NOW: UnixTime = UnixTime(1_800_000_060);

struct Fixture {
    root: TrustedRoot,
    claims: MaintenanceClaims,
    signed: serde_json::Value,
}

fn signed_of(bytes: &[u8]) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()?
        .get("signed")
        .cloned()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let root = TrustedRoot::from_bytes(ROOT).expect("fixture root is valid");
        let claims =
            verify_maintenance_token(TOKEN, &root, HOST, NOW).expect("fixture token is valid");
        let signed = signed_of(TOKEN).expect("fixture token has signed");
        Fixture {
            root,
            claims,
            signed,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    let Ok(claims) = verify_maintenance_token(data, &fx.root, HOST, NOW) else {
        return;
    };
    assert_eq!(claims, fx.claims, "forged claims accepted");
    assert_eq!(
        signed_of(data).as_ref(),
        Some(&fx.signed),
        "forged token accepted"
    );
});
