//! The host files the posture checks parse: /etc/shadow and /etc/passwd (any local admin or a
//! compromised package can write odd lines), pg_hba.conf, /proc/net/tcp, sshd -T output, dpkg
//! log lines and crypt hashes. None may panic; what parses stays within the input's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfence_agent::posture::{fim, services, shadow, sshd};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s = shadow::parse_shadow(&text);
    assert!(s.entries.len() <= shadow::MAX_ENTRIES);
    for e in &s.entries {
        assert!(e.user.len() <= shadow::MAX_LINE_BYTES);
        // Cheap schemes only: the slow ones are bounded by their cost checks, not by fuzzing.
        if shadow::HashKind::of(&e.hash) == shadow::HashKind::Md5crypt {
            let _ = shadow::verify(shadow::HashKind::Md5crypt, b"password", &e.hash);
        }
    }
    let _ = shadow::parse_passwd(&text);
    let _ = services::parse_hba_trust(&text);
    let _ = services::parse_proc_net_tcp(&text, false);
    let _ = services::parse_proc_net_tcp(&text, true);
    let cfg = sshd::SshdConfig::from_sshd_t(&text);
    let _ = sshd::findings(&cfg);
    for line in text.lines() {
        let _ = fim::parse_dpkg_log_line(line);
    }
});
