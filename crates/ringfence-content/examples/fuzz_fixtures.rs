//! Writes the fixtures and seed corpus of the `bundle_reader`, `signed_metadata` and
//! `maintenance_token` fuzz targets: `cargo run -p ringfence-content --example fuzz_fixtures
//! -- fuzz/` from the repository root. Keys are made in a temporary directory and thrown away;
//! only root v1 (the fuzz targets' trust anchor), a signed bundle carrying the v1→v2 rotation
//! and a maintenance token signed by the v1 root keys are kept.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use ringfence_content::{
    BuildOptions, BundleBuilder, EntryKind, KeysInitOptions, Limits, MaintenanceAction,
    MaintenanceClaims, RotateOptions, SchemaId, SeenVersions, SignOptions, StructuralValidator,
    TrustedRoot, UnixTime, VerifyOptions, build_signed_bundle, init_keys, sign_bundle,
    sign_maintenance_token, verify_maintenance_token, verify_signed_bundle,
};

fn main() -> Result<(), Box<dyn Error>> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz".into()));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let now = UnixTime(1_800_000_000);
    let far = UnixTime::parse("2100-01-01T00:00:00Z").ok_or("bad constant")?;
    let keys_dir = std::env::temp_dir().join(format!("ringfence-fuzz-keys-{}", std::process::id()));
    let mut keys = init_keys(
        &keys_dir,
        &KeysInitOptions {
            root_keys: 2,
            root_threshold: 2,
            root_expires: far,
        },
    )?;
    // Signed by both v1 root keys (threshold 2), before they are retired.
    let token = sign_maintenance_token(
        &keys,
        &MaintenanceClaims {
            action: MaintenanceAction::Disarm,
            host: "fuzz-host".into(),
            issued: now,
            expires: now.plus_secs(3_600),
            reason: "fuzz seed".into(),
            nonce: "fuzz-seed-1".into(),
        },
    )?;
    keys.rotate_root(&RotateOptions {
        new_root_keys: 1,
        new_threshold: 1,
        expires: far,
    })?;
    let schema = SchemaId {
        version: 1,
        fingerprint: "sha256:fuzz".into(),
    };
    let sign = |v| SignOptions {
        timestamp_version: v,
        snapshot_version: v,
        targets_version: v,
        timestamp_expires: far,
        snapshot_expires: far,
        targets_expires: far,
    };
    let mut small = BundleBuilder::new(2, schema.clone(), Limits::default());
    small.add(EntryKind::Rule, "rules/a.yml", b"title: a\n".to_vec())?;
    small.add(EntryKind::Ioc, "iocs/ips.txt", b"203.0.113.9\n".to_vec())?;
    small.add(EntryKind::Test, "tests/a.yml", b"rule: a\n".to_vec())?;
    small.metadata("label", "fuzz")?;
    let small = small.build()?;
    let signed = sign_bundle(&small, &keys, &sign(2))?;
    let mut opts = BuildOptions::new(3, schema, now);
    opts.sign = sign(3);
    let pack = build_signed_bundle(
        &repo.join("content/linux"),
        &opts,
        &keys,
        &StructuralValidator,
    )?;

    let root_v1 = keys.root_chain().first().ok_or("no root v1")?.clone();
    let root_v2 = keys.root_chain().get(1).ok_or("no root v2")?.clone();
    fs::create_dir_all(out.join("fixtures"))?;
    fs::write(out.join("fixtures/root.json"), &root_v1)?;
    fs::write(out.join("fixtures/signed-small.bundle"), signed.encode())?;
    fs::write(out.join("fixtures/maintenance.token"), &token)?;
    let seeds: [(&str, &str, Vec<u8>); 9] = [
        ("bundle_reader", "small", small.encode()),
        ("bundle_reader", "linux-pack", pack.bundle.encode()),
        (
            "signed_metadata",
            "small",
            [&[0u8][..], &signed.encode()].concat(),
        ),
        (
            "signed_metadata",
            "root-v2",
            [&[1u8][..], &root_v2].concat(),
        ),
        (
            "signed_metadata",
            "timestamp",
            [&[2u8][..], &signed.timestamp].concat(),
        ),
        (
            "signed_metadata",
            "snapshot",
            [&[3u8][..], &signed.snapshot].concat(),
        ),
        (
            "signed_metadata",
            "targets",
            [&[4u8][..], &signed.targets].concat(),
        ),
        ("maintenance_token", "disarm", token.clone()),
        ("maintenance_token", "root", root_v1.clone()),
    ];
    for (target, name, bytes) in seeds {
        let dir = out.join("corpus").join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("seed-{name}")), bytes)?;
    }
    // The fixture must verify, or the fuzz target would only ever test refusals.
    let trusted = TrustedRoot::from_bytes(&root_v1)?;
    verify_signed_bundle(
        &signed.encode(),
        &trusted,
        SeenVersions::default(),
        &VerifyOptions::new(now),
        &StructuralValidator,
    )?;
    verify_maintenance_token(&token, &trusted, "fuzz-host", now)?;
    fs::remove_dir_all(&keys_dir)?;
    println!("fixtures and seeds written under {}", out.display());
    Ok(())
}
