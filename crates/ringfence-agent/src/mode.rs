//! Which sensor set runs: the eBPF sensor (driver mode) or the driverless sources.
//!
//! `auto` asks the eBPF probe ([`ringfence_sensor::ebpf::probe`]) whether this kernel gives the
//! sensor what it needs (BTF, the bpf syscall, a ring buffer, tracepoints and tp_btf) and picks
//! eBPF when it does. The decision is only a prediction: the agent then loads the sensor, and if
//! that fails (for `auto` or an explicit `ebpf`) it runs driverless, logs the loader's exact
//! reason and emits a `sensor-health` event. It never refuses to run for want of eBPF.

use ringfence_event::Mode;
use ringfence_sensor::ebpf::EbpfOptions;
use ringfence_sensor::ebpf::probe;

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
