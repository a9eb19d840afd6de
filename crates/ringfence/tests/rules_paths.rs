//! `rules check` and the watched file trees: a file rule whose path patterns all lie outside
//! every watched tree is warned about (file:line, rule id, the paths), stays compiled, and
//! does not change the exit status. So is a rule whose every event kind the eBPF sensor's
//! profile gives no hook to.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence");

const RULE: &str = "title: Web shell written\nid: web-shell-1\nlogsource:\n  product: linux\n  \
                    category: file_event\ndetection:\n  sel:\n    \
                    TargetFilename|startswith: '/var/lib/app/'\n  condition: sel\nlevel: high\n";

fn check(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output();
    let Ok(out) = out else {
        panic!("cannot run {BIN}");
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_rule_outside_every_watched_tree_is_a_warning_with_file_line_and_rule() {
    let Ok(tmp) = tempfile::tempdir() else {
        panic!("no temporary directory");
    };
    let rule = tmp.path().join("web.yml");
    let config = tmp.path().join("agent.toml");
    assert!(std::fs::write(&rule, RULE).is_ok());
    assert!(
        std::fs::write(
            &config,
            "[fanotify]\npaths = [\"/etc\"]\nwrite_only_paths = []\ncontent_paths = false\n"
        )
        .is_ok()
    );
    let shown = rule.display().to_string();
    let (code, stdout) = check(&["rules", "check", &shown]);
    assert_eq!(code, 0, "{stdout}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("WARNING"))
        .unwrap_or_default();
    assert!(
        warning.contains(&format!(
            "{shown}:8: rule web-shell-1: field TargetFilename: paths `/var/lib/app/*`"
        )),
        "{stdout}"
    );
    assert!(warning.contains("the agent adds /var/lib/app"), "{stdout}");
    assert!(stdout.contains("1 compiled, 0 refused"), "{stdout}");
    let (code, stdout) = check(&[
        "rules",
        "check",
        "--config",
        &config.display().to_string(),
        &shown,
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("can never fire unless /var/lib/app is watched"),
        "{stdout}"
    );
    // Watched: no warning.
    assert!(
        std::fs::write(
            &config,
            "[fanotify]\npaths = [\"/var/lib\"]\nwrite_only_paths = []\n"
        )
        .is_ok()
    );
    let (_, stdout) = check(&[
        "rules",
        "check",
        "--config",
        &config.display().to_string(),
        &shown,
    ]);
    assert!(!stdout.contains("WARNING"), "{stdout}");
}

const BPF_RULE: &str = "title: bpf loaded\nid: bpf-1\nlogsource:\n  product: linux\n  \
                        category: bpf_load\ndetection:\n  sel:\n    \
                        event.action: bpf-load\n  condition: sel\nlevel: high\n";

#[test]
fn a_rule_on_kinds_the_profile_gives_no_hook_is_a_warning_naming_the_remedy() {
    let Ok(tmp) = tempfile::tempdir() else {
        panic!("no temporary directory");
    };
    let rule = tmp.path().join("bpf.yml");
    assert!(std::fs::write(&rule, BPF_RULE).is_ok());
    let shown = rule.display().to_string();
    let (code, stdout) = check(&["rules", "check", &shown]);
    assert_eq!(code, 0, "{stdout}");
    let warning = stdout
        .lines()
        .find(|l| l.starts_with("WARNING"))
        .unwrap_or_default();
    assert!(
        warning.contains(&format!(
            "{shown}:1: rule bpf-1: it can never fire: it runs only on bpf-load events, which \
             the eBPF sensor's \"default\" profile on a kernel without BPF trampolines has no \
             hook for; [sensor] profile = \"deep\" would enable it"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("1 compiled, 0 refused"), "{stdout}");
    assert!(stdout.contains("1 warning)"), "{stdout}");
    for more in [&["--profile", "deep"][..], &["--trampolines"][..]] {
        let mut args = vec!["rules", "check"];
        args.extend_from_slice(more);
        args.push(&shown);
        let (code, stdout) = check(&args);
        assert_eq!(code, 0, "{stdout}");
        assert!(!stdout.contains("WARNING"), "{more:?}: {stdout}");
    }
    let (code, _) = check(&["rules", "check", "--profile", "fast", &shown]);
    assert_eq!(code, 2);
}
