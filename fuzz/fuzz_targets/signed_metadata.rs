//! The signed-bundle container and the TUF-style metadata parsers see untrusted bytes. The
//! first input byte chooses what the rest is: a whole signed bundle, a root for the rotation
//! step, or the timestamp, snapshot or targets metadata put into an otherwise valid signed
//! bundle (from `fixtures/`), so the JSON and signature paths of each role are reached
//! directly. Every input is verified or refused; nothing panics, and nothing unsigned is
//! accepted. Regenerate `fixtures/` and the seeds with
//! `cargo run -p ringfence-content --example fuzz_fixtures -- fuzz/`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ringfence_content::{
    Limits, SeenVersions, SignedBundle, StructuralValidator, TrustedRoot, UnixTime,
    VerifyOptions, verify_signed_bundle,
};

const ROOT: &[u8] = include_bytes!("../fixtures/root.json");
const SIGNED: &[u8] = include_bytes!("../fixtures/signed-small.bundle");

struct Fixture {
    root: TrustedRoot,
    signed: SignedBundle,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| Fixture {
        root: TrustedRoot::from_bytes(ROOT).expect("fixture root is valid"),
        signed: SignedBundle::decode(SIGNED, &Limits::default()).expect("fixture is valid"),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let fx = fixture();
    let opts = VerifyOptions::new(UnixTime(1_800_000_000));
    let bytes = match mode % 6 {
        0 => {
            if let Ok(parsed) = SignedBundle::decode(rest, &opts.limits) {
                assert_eq!(parsed.encode(), rest, "container round trip");
            }
            rest.to_vec()
        }
        1 => {
            let _ = TrustedRoot::from_bytes(rest);
            let _ = fx.root.update(rest);
            return;
        }
        2 => SignedBundle { timestamp: rest.to_vec(), ..fx.signed.clone() }.encode(),
        3 => SignedBundle { snapshot: rest.to_vec(), ..fx.signed.clone() }.encode(),
        4 => SignedBundle { targets: rest.to_vec(), ..fx.signed.clone() }.encode(),
        _ => SignedBundle { roots: vec![ROOT.to_vec(), rest.to_vec()], ..fx.signed.clone() }.encode(),
    };
    let result =
        verify_signed_bundle(&bytes, &fx.root, SeenVersions::default(), &opts, &StructuralValidator);
    let Ok(verified) = result else {
        return;
    };
    // What the fuzzer wrote may verify only if it is the fixture's own signed content: snapshot
    // and targets byte for byte (the role above hashes them), timestamp and root up to JSON
    // spelling (signatures cover the canonical form), or a root older than the trusted one,
    // which the update skips.
    let signed_of = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b)
            .ok()
            .and_then(|v| v.get("signed").cloned())
    };
    let same_signed = |a: &[u8], b: &[u8]| signed_of(a).is_some() && signed_of(a) == signed_of(b);
    match mode % 6 {
        0 => {}
        2 => assert!(same_signed(rest, &fx.signed.timestamp), "forged timestamp accepted"),
        3 => assert_eq!(rest, fx.signed.snapshot, "forged snapshot accepted"),
        4 => assert_eq!(rest, fx.signed.targets, "forged targets accepted"),
        _ => {
            if verified.root.version() != 1 {
                assert!(same_signed(rest, &fx.signed.roots[1]), "forged root accepted");
            }
        }
    }
});
