//! What this kernel lets the eBPF sensor do, for `ringfence doctor` and `--mode auto`.
//!
//! Loads `bpf/probe.bpf.c` (one do-nothing program per type, and a small ring buffer) and tries
//! each program type: tracepoint, raw_tp and tp_btf are loaded; lsm and fentry are loaded *and*
//! attached, because a kernel that blocks BPF trampolines may refuse either step. A refusal is
//! reported with the step and the exact errno (`EPERM`, `EINVAL`, ...), never as a failure of
//! the probe itself. Everything is unloaded again when the probe returns.

use std::io;

use aya::programs::{BtfTracePoint, FEntry, Lsm, ProgramError, RawTracePoint, TracePoint};
use aya::{Btf, Ebpf, EbpfLoader};

use crate::probe::Probe;

/// The probe object, built from `bpf/probe.bpf.c`.
pub static PROBE_OBJECT: &[u8] = aya::include_bytes_aligned!("../../../../bpf/obj/probe.bpf.o");

/// Why the kernel refused a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `load` or `attach` (or `object` when the probe object itself did not load).
    pub step: &'static str,
    /// The errno of the failing syscall, when there was one.
    pub errno: Option<i32>,
    pub message: String,
}

impl Refusal {
    /// `EPERM (Operation not permitted) at attach: ...`.
    pub fn describe(&self) -> String {
        match self.errno {
            Some(n) => format!(
                "{} ({}) at {}",
                errno_name(n),
                io::Error::from_raw_os_error(n),
                self.step
            ),
            None => format!("refused at {}: {}", self.step, self.message),
        }
    }
}

/// One program type (or capability) and whether it works here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeProbe {
    /// `tracepoint`, `raw_tp`, `tp_btf`, `lsm`, `fentry`, `ring buffer`, `BTF`, `bpf syscall`.
    pub name: &'static str,
    pub result: Result<String, Refusal>,
}

/// Symbolic errno names for the values the bpf syscall returns.
pub fn errno_name(n: i32) -> String {
    match n {
        libc::EPERM => "EPERM".into(),
        libc::ENOENT => "ENOENT".into(),
        libc::ESRCH => "ESRCH".into(),
        libc::E2BIG => "E2BIG".into(),
        libc::EBADF => "EBADF".into(),
        libc::ENOMEM => "ENOMEM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::EBUSY => "EBUSY".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOSPC => "ENOSPC".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EOPNOTSUPP => "EOPNOTSUPP".into(),
        524 => "ENOTSUPP".into(),
        other => format!("errno {other}"),
    }
}

/// The first OS error in an error's cause chain.
pub(crate) fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let n = match err.downcast_ref::<ProgramError>() {
            Some(ProgramError::LoadError { io_error, .. }) => io_error.raw_os_error(),
            Some(ProgramError::SyscallError(s)) => s.io_error.raw_os_error(),
            _ => err
                .downcast_ref::<io::Error>()
                .and_then(io::Error::raw_os_error),
        };
        if n.is_some() {
            return n;
        }
        cur = err.source();
    }
    None
}

pub(crate) fn refusal(step: &'static str, e: &ProgramError) -> Refusal {
    Refusal {
        step,
        errno: errno_of(e),
        message: e.to_string(),
    }
}

fn load_tracepoint(ebpf: &mut Ebpf) -> Result<String, Refusal> {
    let p: &mut TracePoint = program(ebpf, "probe_tracepoint")?;
    p.load().map_err(|e| refusal("load", &e))?;
    Ok("loads".into())
}

fn load_raw_tp(ebpf: &mut Ebpf) -> Result<String, Refusal> {
    let p: &mut RawTracePoint = program(ebpf, "probe_raw_tp")?;
    p.load().map_err(|e| refusal("load", &e))?;
    Ok("loads".into())
}

fn load_tp_btf(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, Refusal> {
    let p: &mut BtfTracePoint = program(ebpf, "probe_tp_btf")?;
    p.load("sched_process_exec", btf)
        .map_err(|e| refusal("load", &e))?;
    Ok("loads (sched_process_exec)".into())
}

fn load_lsm(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, Refusal> {
    let p: &mut Lsm = program(ebpf, "probe_lsm")?;
    p.load("file_open", btf).map_err(|e| refusal("load", &e))?;
    let link = p.attach().map_err(|e| refusal("attach", &e))?;
    let _ = p.detach(link);
    Ok("loads and attaches (file_open)".into())
}

fn load_fentry(ebpf: &mut Ebpf, btf: &Btf) -> Result<String, Refusal> {
    let p: &mut FEntry = program(ebpf, "probe_fentry")?;
    p.load("do_unlinkat", btf)
        .map_err(|e| refusal("load", &e))?;
    let link = p.attach().map_err(|e| refusal("attach", &e))?;
    let _ = p.detach(link);
    Ok("loads and attaches (do_unlinkat)".into())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, Refusal>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf.program_mut(name).ok_or_else(|| Refusal {
        step: "object",
        errno: None,
        message: format!("program {name} missing from probe.bpf.o"),
    })?;
    p.try_into().map_err(|e| refusal("object", &e))
}

/// Probe every program type the sensor could use. Never fails: each refusal is a row.
pub fn program_types() -> Vec<TypeProbe> {
    let rows = probe_types();
    super::release_loader_memory();
    rows
}

fn probe_types() -> Vec<TypeProbe> {
    let mut rows = Vec::new();
    let btf = match Btf::from_sys_fs() {
        Ok(btf) => {
            rows.push(TypeProbe {
                name: "BTF",
                result: Ok("/sys/kernel/btf/vmlinux parses".into()),
            });
            Some(btf)
        }
        Err(e) => {
            rows.push(TypeProbe {
                name: "BTF",
                result: Err(Refusal {
                    step: "read",
                    errno: errno_of(&e),
                    message: e.to_string(),
                }),
            });
            None
        }
    };
    let loaded = EbpfLoader::new().btf(btf.as_ref()).load(PROBE_OBJECT);
    let mut ebpf = match loaded {
        Ok(ebpf) => {
            rows.push(TypeProbe {
                name: "bpf syscall",
                result: Ok("object loads (maps created)".into()),
            });
            rows.push(TypeProbe {
                name: "ring buffer",
                result: Ok("BPF_MAP_TYPE_RINGBUF created".into()),
            });
            ebpf
        }
        Err(e) => {
            let r = Refusal {
                step: "object",
                errno: errno_of(&e),
                message: e.to_string(),
            };
            for name in [
                "bpf syscall",
                "ring buffer",
                "tracepoint",
                "raw_tp",
                "tp_btf",
                "lsm",
                "fentry",
            ] {
                rows.push(TypeProbe {
                    name,
                    result: Err(r.clone()),
                });
            }
            return rows;
        }
    };
    rows.push(TypeProbe {
        name: "tracepoint",
        result: load_tracepoint(&mut ebpf),
    });
    rows.push(TypeProbe {
        name: "raw_tp",
        result: load_raw_tp(&mut ebpf),
    });
    let no_btf = || Refusal {
        step: "load",
        errno: None,
        message: "needs kernel BTF".into(),
    };
    let (tp_btf, lsm, fentry) = match &btf {
        Some(btf) => (
            load_tp_btf(&mut ebpf, btf),
            load_lsm(&mut ebpf, btf),
            load_fentry(&mut ebpf, btf),
        ),
        None => (Err(no_btf()), Err(no_btf()), Err(no_btf())),
    };
    rows.push(TypeProbe {
        name: "tp_btf",
        result: tp_btf,
    });
    rows.push(TypeProbe {
        name: "lsm",
        result: lsm,
    });
    rows.push(TypeProbe {
        name: "fentry",
        result: fentry,
    });
    rows
}

/// Whether the sensor's needs are met: BTF, the bpf syscall, ring buffer, tracepoint and
/// tp_btf. LSM and fentry are not needed. `Err` says what is missing.
pub fn sensor_supported(rows: &[TypeProbe]) -> Result<(), String> {
    let missing: Vec<String> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.name,
                "BTF" | "bpf syscall" | "ring buffer" | "tracepoint" | "tp_btf"
            )
        })
        .filter_map(|r| {
            r.result
                .as_ref()
                .err()
                .map(|e| format!("{}: {}", r.name, e.describe()))
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing.join("; "))
    }
}

/// One probe row as the doctor shows it.
fn doctor_row(r: TypeProbe) -> Probe {
    match r.result {
        Ok(detail) => Probe {
            name: r.name,
            available: true,
            detail,
        },
        Err(refusal) => Probe {
            name: r.name,
            available: false,
            detail: match (r.name, refusal.errno) {
                ("lsm" | "fentry", Some(_)) => format!(
                    "refused: {} (BPF trampolines are blocked here; the sensor's kinds fall \
                     back to tracepoints)",
                    refusal.describe()
                ),
                _ => format!("refused: {}", refusal.describe()),
            },
        },
    }
}

/// Load the real sensor in the deep profile (every kind on its cheapest hook here), then
/// unload it: the exact answer to "would it load". `Ok` says how many programs attached, and
/// has one row per kind: the hook it gets, and whether the default profile has it.
pub fn trial_load() -> Result<(String, Vec<Probe>), String> {
    let sensor = super::EbpfSensor::load(&super::EbpfOptions {
        profile: super::Profile::Deep,
        ..super::EbpfOptions::default()
    })
    .map_err(|e| e.to_string())?;
    let attached = sensor
        .attached()
        .iter()
        .filter(|a| a.skipped.is_none())
        .count();
    let mut detail = format!("loads and attaches {attached} programs (deep profile)");
    if sensor
        .kind_hooks()
        .iter()
        .any(|h| h.tier == Some(super::HookTier::Syscall))
    {
        detail.push_str(DEEP_COST);
    }
    let rows = sensor.kind_hooks().iter().map(kind_row).collect();
    Ok((detail, rows))
}

/// What the deep profile's syscall tracepoints were measured to cost, for the doctor (the
/// README has the tables).
const DEEP_COST: &str = "; deep's syscall tracepoints cost every syscall on the host: measured \
    1.04-1.11x on a loop of open, stat and close (Debian 6.1 and 6.12, counted) and 1.12-1.15x \
    on a 6.18 host; `ringfence bench syscall-storm --mode ebpf --config FILE` with \
    `[sensor] profile = \"deep\"` measures this one";

/// The doctor's row for one kind: the hook it gets here, and what the default profile does.
fn kind_row(h: &super::KindHook) -> Probe {
    use super::{HookTier, RecordKind as R};
    let file = [R::FileCreate, R::FileModify, R::FileDelete, R::FileRename];
    let instead = if h.kinds.iter().any(|k| file.contains(k)) {
        "the default profile takes file events from fanotify"
    } else if h.kinds.contains(&R::Privilege) || h.kinds.contains(&R::Ptrace) {
        "the default profile takes them from the process connector"
    } else {
        "the default profile does not see them"
    };
    match h.tier {
        Some(HookTier::Syscall) => Probe {
            name: h.label,
            available: true,
            detail: format!(
                "deep profile only: {} ({}), the syscall slow path for every task; {instead}",
                HookTier::Syscall,
                h.detail
            ),
        },
        Some(t) => Probe {
            name: h.label,
            available: true,
            detail: format!("{t} ({}), in both profiles", h.detail),
        },
        None => Probe {
            name: h.label,
            available: false,
            detail: format!("no hook: {}; {instead}", h.detail),
        },
    }
}

/// What the doctor shows for the eBPF sensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doctor {
    /// One row per program type and capability, then one for the sensor itself.
    pub rows: Vec<Probe>,
    /// `Ok` when the sensor loads here; otherwise why not (the missing capabilities with their
    /// errnos, or the loader's error).
    pub supported: Result<(), String>,
}

/// Probe every program type, then (when those the sensor needs work) load the sensor itself
/// and unload it again. Never fails: each refusal is a row.
pub fn doctor() -> Doctor {
    let types = program_types();
    let needs = sensor_supported(&types);
    let mut rows: Vec<Probe> = types.into_iter().map(doctor_row).collect();
    let supported = match needs {
        Ok(()) => match trial_load() {
            Ok((detail, kinds)) => {
                rows.push(Probe {
                    name: "ebpf sensor",
                    available: true,
                    detail,
                });
                rows.extend(kinds);
                Ok(())
            }
            Err(why) => {
                rows.push(Probe {
                    name: "ebpf sensor",
                    available: false,
                    detail: format!("does not load: {why}"),
                });
                Err(format!("the sensor does not load: {why}"))
            }
        },
        Err(missing) => {
            rows.push(Probe {
                name: "ebpf sensor",
                available: false,
                detail: format!("not tried: missing {missing}"),
            });
            Err(missing)
        }
    };
    Doctor { rows, supported }
}

/// The doctor's rows (see [`doctor`]).
pub fn doctor_rows() -> Vec<Probe> {
    doctor().rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(libc::EPERM), "EPERM");
        assert_eq!(errno_name(524), "ENOTSUPP");
        let r = Refusal {
            step: "attach",
            errno: Some(libc::EPERM),
            message: String::new(),
        };
        assert!(r.describe().starts_with("EPERM ("), "{}", r.describe());
        assert!(r.describe().ends_with("at attach"));
    }

    #[test]
    fn sensor_support_ignores_lsm_and_fentry() {
        let refused = || {
            Err(Refusal {
                step: "load",
                errno: Some(libc::EPERM),
                message: String::new(),
            })
        };
        let mut rows = vec![
            TypeProbe {
                name: "lsm",
                result: refused(),
            },
            TypeProbe {
                name: "tracepoint",
                result: Ok(String::new()),
            },
        ];
        assert_eq!(sensor_supported(&rows), Ok(()));
        rows.push(TypeProbe {
            name: "tp_btf",
            result: refused(),
        });
        assert!(sensor_supported(&rows).is_err());
    }
}
