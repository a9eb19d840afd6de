//! Which sensor set runs: the eBPF sensor (driver mode) or the driverless sources.
//!
//! `auto` asks the eBPF probe ([`ringfence_sensor::ebpf::probe`]) whether this kernel gives the
//! sensor what it needs (BTF, the bpf syscall, a ring buffer, tracepoints and tp_btf) and picks
//! eBPF when it does. The decision is only a prediction: the agent then loads the sensor, and if
//! that fails (for `auto` or an explicit `ebpf`) it runs driverless, logs the loader's exact
//! reason and emits a `sensor-health` event. It never refuses to run for want of eBPF.
//!
//! [`unhooked_kinds`] says which event kinds reach no rule in eBPF mode: those the sensor's
//! profile leaves without a hook that no source beside it fills in (see `hooked` in
//! `ringfence-detect` for the rules this leaves unable to fire).

use ringfence_detect::hooked::Unhooked;
use ringfence_event::{Mode, SourceKind};
use ringfence_sensor::ebpf::convert::event_kind;
use ringfence_sensor::ebpf::probe;
use ringfence_sensor::ebpf::{EbpfOptions, RecordKind, hooks};

use crate::config::{Config, ModeChoice};

/// Whether the eBPF sensor's needs are met here; `Err` names each missing piece with its errno.
/// Loads and unloads the probe object (a few milliseconds).
pub fn ebpf_support() -> Result<(), String> {
    probe::sensor_supported(&probe::program_types())
}

/// The mode for `choice` given `support` (called only for `auto`), and why when the choice
/// was not explicit.
pub fn choose_mode(
    choice: ModeChoice,
    support: impl FnOnce() -> Result<(), String>,
) -> (Mode, Option<String>) {
    match choice {
        ModeChoice::Driverless => (Mode::Driverless, None),
        ModeChoice::Ebpf => (Mode::Ebpf, None),
        ModeChoice::Auto => match support() {
            Ok(()) => (
                Mode::Ebpf,
                Some(
                    "auto: the eBPF sensor's needs are met (BTF, ring buffer, tracepoint, tp_btf)"
                        .into(),
                ),
            ),
            Err(why) => (
                Mode::Driverless,
                Some(format!(
                    "auto: the eBPF sensor cannot run here ({why}); running driverless"
                )),
            ),
        },
    }
}

/// The mode the agent will try for `choice`, and why when it was not asked for explicitly.
/// For `auto` this probes the kernel (see [`ebpf_support`]).
pub fn resolve_mode(choice: ModeChoice) -> (Mode, Option<String>) {
    choose_mode(choice, ebpf_support)
}

/// The eBPF sensor's options from the agent's configuration: the watched trees as in-kernel
/// path prefixes, the ignored pids and comms, the kinds switched off. The agent's own process
/// is always ignored (so its reads of /proc and writes of its outputs do not feed back) and
/// protected (signals aimed at it are reported); so is the supervisor that started it.
pub fn ebpf_options(config: &Config, supervisor: Option<u32>) -> EbpfOptions {
    let e = &config.ebpf;
    let mut ignored_pids = e.ignored_pids.clone();
    let mut protected_pids = Vec::new();
    if let Some(pid) = supervisor {
        ignored_pids.push(pid);
        protected_pids.push(pid);
    }
    EbpfOptions {
        watched_prefixes: config.watched_prefixes(),
        ignored_pids,
        ignored_comms: e.ignored_comms.clone(),
        protected_pids,
        kinds_off: e.kinds_off.clone(),
        profile: config.sensor.profile,
        skip_hooks: Vec::new(),
        ignore_self: true,
        protect_self: true,
        wakeup_bytes: e.wakeup_bytes,
        poll_interval_ms: e.poll_interval_ms,
    }
}

/// The kinds the eBPF sensor left without a hook (`uncovered`, with what would hook each) that
/// reach no rule: the file kinds come from fanotify and privilege changes and ptrace from the
/// process connector beside the sensor when `[sources]` runs them; kinds `[ebpf] kinds_off`
/// switches off are the operator's choice, not reported.
pub fn unhooked_kinds(
    config: &Config,
    uncovered: impl IntoIterator<Item = (RecordKind, &'static str)>,
) -> Vec<Unhooked> {
    let mut out: Vec<Unhooked> = Vec::new();
    for (record, remedy) in uncovered {
        let beside = match filled_beside(record) {
            Some(SourceKind::Fanotify) => config.sources.fanotify,
            Some(SourceKind::ProcConnector) => config.sources.proc_connector,
            _ => false,
        };
        let kind = event_kind(record);
        if beside || config.ebpf.kinds_off.contains(&kind) || out.iter().any(|u| u.kind == kind) {
            continue;
        }
        out.push(Unhooked {
            kind,
            remedy: remedy.to_owned(),
        });
    }
    out
}

/// The driverless source the agent opens beside the eBPF sensor to fill in `record` when the
/// sensor has no hook for it: fanotify for the file kinds, the process connector for privilege
/// changes and ptrace; `None` for the kinds nothing fills in.
pub fn filled_beside(record: RecordKind) -> Option<SourceKind> {
    use RecordKind as R;
    match record {
        R::FileCreate | R::FileModify | R::FileDelete | R::FileRename => Some(SourceKind::Fanotify),
        R::Privilege | R::Ptrace => Some(SourceKind::ProcConnector),
        _ => None,
    }
}

/// [`unhooked_kinds`] for a sensor not loaded: what `profile` would leave unhooked on a kernel
/// whose trampolines are as said (for `content build` and `rules check`).
pub fn planned_unhooked(
    config: &Config,
    profile: hooks::Profile,
    trampolines: hooks::Trampolines,
) -> Vec<Unhooked> {
    unhooked_kinds(
        config,
        hooks::planned_uncovered(profile, trampolines)
            .into_iter()
            .map(|(_, k, remedy)| (k, remedy)),
    )
}

/// [`planned_unhooked`] on this kernel: only the hooks it has count (for `ringfence doctor`,
/// which then says what the agent will).
pub fn unhooked_here(
    config: &Config,
    profile: hooks::Profile,
    trampolines: hooks::Trampolines,
) -> Vec<Unhooked> {
    unhooked_kinds(
        config,
        hooks::uncovered_here(profile, trampolines)
            .into_iter()
            .map(|(_, k, remedy)| (k, remedy)),
    )
}

/// [`unhooked_kinds`] for a loaded sensor: the kinds its hooks left uncovered.
pub fn loaded_unhooked(
    config: &Config,
    sensor: &ringfence_sensor::ebpf::EbpfSensor,
) -> Vec<Unhooked> {
    let profile = sensor.profile();
    unhooked_kinds(
        config,
        sensor
            .kind_hooks()
            .iter()
            .filter(|h| h.tier.is_none())
            .flat_map(|h| {
                h.kinds
                    .iter()
                    .map(move |&k| (k, hooks::remedy_here(k, profile)))
            }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_probe_and_explicit_choices_do_not_probe() {
        let probed = std::cell::Cell::new(0);
        let ok = || {
            probed.set(probed.get() + 1);
            Ok(())
        };
        let (mode, why) = choose_mode(ModeChoice::Auto, ok);
        assert_eq!(mode, Mode::Ebpf);
        assert!(why.is_some_and(|w| w.starts_with("auto:")));
        let (mode, why) = choose_mode(ModeChoice::Auto, || {
            Err("tp_btf: EPERM (Operation not permitted) at load".into())
        });
        assert_eq!(mode, Mode::Driverless);
        assert!(why.is_some_and(|w| w.contains("tp_btf: EPERM") && w.ends_with("driverless")));
        assert_eq!(probed.get(), 1);
        let never = || -> Result<(), String> { panic!("explicit modes do not probe") };
        assert_eq!(choose_mode(ModeChoice::Ebpf, never), (Mode::Ebpf, None));
        assert_eq!(
            choose_mode(ModeChoice::Driverless, never),
            (Mode::Driverless, None)
        );
    }

    #[test]
    fn the_default_profile_leaves_the_syscall_only_kinds_unhooked_but_not_those_filled_in_beside() {
        use ringfence_event::EventKind as K;
        use ringfence_sensor::ebpf::{Profile, Trampolines};
        let mut c = Config::default();
        let kinds = |c: &Config, p| -> Vec<K> {
            planned_unhooked(c, p, Trampolines::Refused)
                .into_iter()
                .map(|u| u.kind)
                .collect()
        };
        let default = kinds(&c, Profile::Default);
        for k in [K::MemfdCreate, K::BpfLoad, K::MemoryExec, K::NetworkAccept] {
            assert!(default.contains(&k), "{k:?} in {default:?}");
        }
        // fanotify and the process connector fill these in beside the sensor.
        for k in [K::FileCreate, K::PrivilegeChange, K::Ptrace, K::ProcessExec] {
            assert!(!default.contains(&k), "{k:?} in {default:?}");
        }
        assert!(
            planned_unhooked(&c, Profile::Default, Trampolines::Refused)
                .iter()
                .all(|u| u.remedy == "[sensor] profile = \"deep\"")
        );
        assert!(kinds(&c, Profile::Deep).is_empty());
        c.sources.fanotify = false;
        c.ebpf.kinds_off = vec![K::BpfLoad];
        let default = kinds(&c, Profile::Default);
        assert!(default.contains(&K::FileCreate) && !default.contains(&K::BpfLoad));
    }

    #[test]
    fn options_carry_the_watched_trees_and_the_ignored() {
        let mut c = Config::default();
        c.fanotify.paths = vec!["/etc".into(), "/root/.ssh".into()];
        c.fanotify.write_only_paths = vec!["/usr/bin".into()];
        c.ebpf.ignored_pids = vec![7];
        c.ebpf.ignored_comms = vec!["backupd".into()];
        let o = ebpf_options(&c, Some(42));
        assert_eq!(o.watched_prefixes, ["/etc/", "/root/.ssh/", "/usr/bin/"]);
        assert_eq!(o.ignored_pids, [7, 42]);
        assert_eq!(o.protected_pids, [42]);
        assert_eq!(o.ignored_comms, ["backupd"]);
        assert!(o.ignore_self && o.protect_self);
        assert_eq!(o.poll_interval_ms, 5);
        c.sources.fanotify = false;
        assert!(ebpf_options(&c, None).watched_prefixes.is_empty());
    }
}
