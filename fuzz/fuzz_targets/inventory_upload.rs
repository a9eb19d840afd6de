//! What an agent sends the console as its inventory: every body parses or is refused, nothing
//! panics, a parsed upload is within its bounds, and a delta applied to a held inventory
//! either gives the digest it announces or is refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_wire::inventory::{
    Inventory, InventoryBody, InventoryUpload, MAX_ITEMS, Package, apply_delta,
};

fuzz_target!(|data: &[u8]| {
    let Ok(upload) = InventoryUpload::parse(data) else {
        return;
    };
    assert_eq!(upload.sha256.len(), 64);
    if let InventoryBody::Delta { base_sha256, delta } = &upload.body {
        let mut held = Inventory {
            packages: vec![Package {
                name: "bash".into(),
                version: "5.2.15-2+b7".into(),
                architecture: "amd64".into(),
            }],
            ..Inventory::default()
        };
        held.canonicalize();
        let held_sha = held.sha256();
        if let Ok(result) = apply_delta(&held, &held_sha, base_sha256, delta, &upload.sha256) {
            assert_eq!(result.sha256(), upload.sha256);
            assert!(result.largest_section().0 <= MAX_ITEMS);
        }
    }
});
