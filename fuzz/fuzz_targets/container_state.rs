//! /proc/PID/cgroup text and container runtimes' state files: a container's creator chooses its
//! cgroup names and labels, so these parsers must never panic, and what they return is bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_sensor::container::{Runtime, from_proc_cgroup, parse_state};

fuzz_target!(|data: &[u8]| {
    if let Some((_, id)) = from_proc_cgroup(data) {
        assert_eq!(id.len(), 64);
    }
    let id = "0".repeat(64);
    for runtime in [
        Runtime::Docker,
        Runtime::Containerd,
        Runtime::CriO,
        Runtime::Podman,
    ] {
        let st = parse_state(runtime, &id, data);
        for label in [st.image_name, st.pod_name, st.pod_namespace].into_iter().flatten() {
            assert!(label.len() <= 512);
        }
    }
});
