//! Decoded records into the shared [`Event`] model: the same ECS fields driverless mode fills,
//! plus those only the kernel sees (syscall arguments, ptrace, memory, module and BPF loads).
//!
//! Conversion is pure apart from one best-effort read: the executable of a ptrace or signal
//! target, from `/proc/<pid>/exe`.

use std::borrow::Cow;

use ringfence_event::{
    Detail, Event, EventKind, File, Network, Parent, Privilege, Process, SourceKind, TargetProcess,
};

use super::record::{Body, Record, RecordKind, syscall_name};
use crate::sys::Clocks;

/// The event kind a record kind becomes.
pub fn event_kind(kind: RecordKind) -> EventKind {
    match kind {
        RecordKind::Exec => EventKind::ProcessExec,
        RecordKind::Fork => EventKind::ProcessFork,
        RecordKind::Exit => EventKind::ProcessExit,
        RecordKind::Connect => EventKind::NetworkConnect,
        RecordKind::Accept => EventKind::NetworkAccept,
        RecordKind::Bind => EventKind::NetworkBind,
        RecordKind::Listen => EventKind::NetworkListen,
        RecordKind::FileCreate => EventKind::FileCreate,
        RecordKind::FileModify => EventKind::FileModify,
        RecordKind::FileDelete => EventKind::FileDelete,
        RecordKind::FileRename => EventKind::FileRename,
        RecordKind::Privilege => EventKind::PrivilegeChange,
        RecordKind::Ptrace => EventKind::Ptrace,
        RecordKind::Module => EventKind::ModuleLoad,
        RecordKind::Bpf => EventKind::BpfLoad,
        RecordKind::Memfd => EventKind::MemfdCreate,
        RecordKind::MemExec => EventKind::MemoryExec,
        RecordKind::Signal => EventKind::Signal,
    }
}

/// The record kinds that produce `kind` (for switching kinds off in the kernel).
pub fn record_kinds(kind: EventKind) -> impl Iterator<Item = RecordKind> {
    RecordKind::ALL
        .into_iter()
        .filter(move |k| event_kind(*k) == kind)
}

/// `prog_get_fd_by_id`, `map_get_fd_by_id`, `link_get_fd_by_id` for those bpf(2) commands
/// (13, 14, 30): the first step of detaching or rewriting someone else's BPF object.
pub fn bpf_get_fd_command(cmd: u32) -> Option<&'static str> {
    match cmd {
        13 => Some("prog_get_fd_by_id"),
        14 => Some("map_get_fd_by_id"),
        30 => Some("link_get_fd_by_id"),
        _ => None,
    }
}

/// A wait status as ECS `process.exit_code`: the code, or 128 + the signal that ended it.
pub fn exit_code(status: i32) -> i64 {
    let sig = status & 0x7f;
    if sig == 0 {
        i64::from((status >> 8) & 0xff)
    } else {
        128 + i64::from(sig)
    }
}

/// `PROT_*` bits as `rwx` letters.
pub fn protection(prot: u32) -> &'static str {
    const TABLE: [&str; 8] = ["---", "r--", "-w-", "rw-", "--x", "r-x", "-wx", "rwx"];
    TABLE.get((prot & 7) as usize).copied().unwrap_or("---")
}

/// `enum bpf_prog_type` names, for the ones worth telling apart.
pub fn bpf_prog_type(t: u32) -> Cow<'static, str> {
    const NAMES: [&str; 33] = [
        "unspec",
        "socket_filter",
        "kprobe",
        "sched_cls",
        "sched_act",
        "tracepoint",
        "xdp",
        "perf_event",
        "cgroup_skb",
        "cgroup_sock",
        "lwt_in",
        "lwt_out",
        "lwt_xmit",
        "sock_ops",
        "sk_skb",
        "cgroup_device",
        "sk_msg",
        "raw_tracepoint",
        "cgroup_sock_addr",
        "lwt_seg6local",
        "lirc_mode2",
        "sk_reuseport",
        "flow_dissector",
        "cgroup_sysctl",
        "raw_tracepoint_writable",
        "cgroup_sockopt",
        "tracing",
        "struct_ops",
        "ext",
        "lsm",
        "sk_lookup",
        "syscall",
        "netfilter",
    ];
    match NAMES.get(t as usize) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(t.to_string()),
    }
}

fn some_id(v: i64) -> Option<i64> {
    // -1 means "leave unchanged" to the set*id calls.
    (v != -1 && v != i64::from(u32::MAX)).then_some(v)
}

fn proc_exe(pid: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The file name of a module path without its `.ko[.xz|.zst|.gz]` suffix.
fn module_name(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    match name.find(".ko") {
        Some(i) if i > 0 => name.get(..i).unwrap_or(name).to_owned(),
        _ => name.to_owned(),
    }
}

/// Build the event for one record. `clocks` converts kernel boot time to wall-clock time.
pub fn to_event(rec: Record, clocks: &Clocks) -> Event {
    let h = &rec.header;
    let mut e = Event::new(
        event_kind(rec.kind),
        SourceKind::Ebpf,
        clocks.from_boottime(h.ktime_ns),
    );
    e.process = Some(Process {
        pid: h.pid,
        name: (!h.comm.is_empty()).then(|| h.comm.clone()),
        start: (h.start_ns != 0).then(|| clocks.from_boottime(h.start_ns)),
        parent: (h.ppid != 0).then(|| Parent {
            pid: h.ppid,
            ..Parent::default()
        }),
        ..Process::default()
    });
    e.user.id = Some(i64::from(h.uid));
    e.user.effective_id = Some(i64::from(h.euid));
    e.user.group_id = Some(i64::from(h.gid));
    let syscall = |v: u32| syscall_name(v).map(Cow::Borrowed);
    match rec.body {
        Body::Exec {
            executable,
            cwd,
            args,
            ..
        } => {
            let p = e.process_mut();
            p.executable = (!executable.is_empty()).then_some(executable);
            p.working_directory = (!cwd.is_empty()).then_some(cwd);
            p.command_line = (!args.is_empty()).then(|| args.join(" "));
            p.args = args;
        }
        Body::Fork => {}
        Body::Exit { status } => e.process_mut().exit_code = Some(exit_code(status)),
        Body::Net {
            kind,
            protocol,
            source,
            destination,
            ..
        } => {
            let (direction, call) = match kind {
                RecordKind::Connect => ("egress", "connect"),
                RecordKind::Accept => ("ingress", "accept"),
                RecordKind::Bind => ("listening", "bind"),
                _ => ("listening", "listen"),
            };
            e.syscall = Some(Cow::Borrowed(call));
            e.network = Some(Network {
                transport: match protocol {
                    6 => Some(Cow::Borrowed("tcp")),
                    17 => Some(Cow::Borrowed("udp")),
                    _ => None,
                },
                direction: Some(Cow::Borrowed(direction)),
                source_ip: source.map(|s| s.0),
                source_port: source.map(|s| s.1),
                destination_ip: destination.map(|d| d.0),
                destination_port: destination.map(|d| d.1),
                destination_domain: None,
            });
        }
        Body::File { path, old_path, .. } => {
            e.file = Some(File {
                path,
                original_path: old_path,
                ..File::default()
            });
        }
        Body::Privilege {
            syscall: call,
            a,
            b,
            c: _,
        } => {
            e.syscall = syscall(call);
            let mut p = Privilege::default();
            match call {
                1 => {
                    p.new_uid = some_id(a);
                    p.new_euid = some_id(a);
                }
                3 | 5 => {
                    p.new_uid = some_id(a);
                    p.new_euid = some_id(b);
                }
                2 => p.new_gid = some_id(a),
                4 | 6 => p.new_gid = some_id(a).or(some_id(b)),
                7 => p.capabilities = Some(a),
                _ => {}
            }
            e.privilege = Some(p);
        }
        Body::Ptrace {
            request,
            target_pid,
        } => {
            e.syscall = Some(Cow::Borrowed("ptrace"));
            // PTRACE_TRACEME names no target: the tracer is the parent.
            let target = if request == 0 { h.ppid } else { target_pid };
            e.target = Some(TargetProcess {
                pid: target,
                executable: proc_exe(target),
            });
            e.detail = Some(Box::new(Detail {
                ptrace_request: Some(request),
                ..Detail::default()
            }));
        }
        Body::Module {
            syscall: call,
            path,
            ..
        } => {
            e.syscall = syscall(call);
            e.detail = Some(Box::new(Detail {
                module_name: path.as_deref().map(module_name),
                ..Detail::default()
            }));
            e.file = path.map(|path| File {
                path,
                ..File::default()
            });
        }
        Body::Bpf {
            cmd,
            prog_type,
            prog_name,
            ..
        } => {
            e.syscall = Some(Cow::Borrowed("bpf"));
            e.detail = Some(Box::new(match bpf_get_fd_command(cmd) {
                // A descriptor to one of the agent's own objects (the sensor reports no other).
                Some(command) => Detail {
                    bpf_command: Some(Cow::Borrowed(command)),
                    ..Detail::default()
                },
                None => Detail {
                    bpf_command: Some(Cow::Borrowed("prog_load")),
                    bpf_program_type: Some(bpf_prog_type(prog_type)),
                    bpf_program_name: (!prog_name.is_empty()).then_some(prog_name),
                    ..Detail::default()
                },
            }));
        }
        Body::Memfd { name, .. } => {
            e.syscall = Some(Cow::Borrowed("memfd_create"));
            e.file = Some(File {
                path: format!("memfd:{name}"),
                ..File::default()
            });
        }
        Body::MemExec {
            syscall: call,
            prot,
            ..
        } => {
            e.syscall = syscall(call);
            e.detail = Some(Box::new(Detail {
                memory_protection: Some(Cow::Borrowed(protection(prot))),
                ..Detail::default()
            }));
        }
        Body::Signal {
            syscall: call,
            target_pid,
            signal,
        } => {
            e.syscall = syscall(call);
            e.target = Some(TargetProcess {
                pid: target_pid,
                executable: proc_exe(target_pid),
            });
            e.detail = Some(Box::new(Detail {
                signal_number: Some(i64::from(signal)),
                ..Detail::default()
            }));
        }
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_protections() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(9), 137);
        assert_eq!(protection(5), "r-x");
        assert_eq!(protection(7), "rwx");
        assert_eq!(bpf_prog_type(5), "tracepoint");
        assert_eq!(bpf_prog_type(999), "999");
        assert_eq!(
            module_name("/lib/modules/x/kernel/nf_tables.ko.zst"),
            "nf_tables"
        );
    }

    #[test]
    fn every_record_kind_maps_to_a_distinct_event_kind() {
        let mut seen = std::collections::HashSet::new();
        for k in RecordKind::ALL {
            assert!(seen.insert(event_kind(k)), "{k:?}");
            assert_eq!(record_kinds(event_kind(k)).collect::<Vec<_>>(), vec![k]);
        }
    }

    /// A record of `kind` with every slot filled, as the kernel could write it.
    fn full_record(kind: RecordKind) -> Record {
        use std::net::{IpAddr, Ipv4Addr};
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let body = match kind {
            RecordKind::Exec => Body::Exec {
                argc: 2,
                executable: "/usr/bin/curl".into(),
                cwd: "/tmp".into(),
                args: vec!["curl".into(), "-s".into()],
            },
            RecordKind::Fork => Body::Fork,
            RecordKind::Exit => Body::Exit { status: 9 },
            RecordKind::Connect | RecordKind::Accept | RecordKind::Bind | RecordKind::Listen => {
                Body::Net {
                    kind,
                    protocol: 6,
                    // Only accept reads a peer from the socket (see `net_sock` in the C).
                    source: (kind == RecordKind::Accept).then_some((ip, 40000)),
                    destination: Some((ip, 443)),
                    fd: 3,
                }
            }
            RecordKind::FileCreate
            | RecordKind::FileModify
            | RecordKind::FileDelete
            | RecordKind::FileRename => Body::File {
                kind,
                syscall: 18,
                path: "/etc/cron.d/job.sh".into(),
                old_path: (kind == RecordKind::FileRename).then(|| "/tmp/job.sh".into()),
            },
            RecordKind::Privilege => Body::Privilege {
                syscall: 5,
                a: 0,
                b: 0,
                c: 0,
            },
            RecordKind::Ptrace => Body::Ptrace {
                request: 16,
                target_pid: 1,
            },
            RecordKind::Module => Body::Module {
                syscall: 14,
                fd: 3,
                path: Some("/lib/modules/x/nf_tables.ko.zst".into()),
            },
            RecordKind::Bpf => Body::Bpf {
                cmd: 5,
                prog_type: 2,
                prog_name: "probe".into(),
                object_id: 0,
            },
            RecordKind::Memfd => Body::Memfd {
                flags: 1,
                name: "stage/two.bin".into(),
            },
            RecordKind::MemExec => Body::MemExec {
                syscall: 9,
                prot: 7,
                addr: 4096,
                len: 4096,
                flags: 0,
            },
            RecordKind::Signal => Body::Signal {
                syscall: 10,
                target_pid: 1,
                signal: 9,
            },
        };
        Record {
            kind,
            header: crate::ebpf::record::Header {
                pid: 42,
                ppid: 1,
                uid: 1000,
                gid: 1000,
                euid: 0,
                start_ns: 5,
                ktime_ns: 7,
                comm: "curl".into(),
                ..Default::default()
            },
            body,
        }
    }

    #[test]
    fn every_field_a_record_fills_is_in_the_schemas_ebpf_column() {
        use ringfence_event::{Field, Mode};
        for kind in RecordKind::ALL {
            let e = to_event(full_record(kind), &Clocks::default());
            let ek = event_kind(kind);
            for f in Field::ALL {
                if f.get(&e).is_some() {
                    assert!(
                        f.spec().filled_in(Mode::Ebpf).contains(ek),
                        "{} is filled for {ek:?} but the schema's ebpf column does not say so",
                        f.name()
                    );
                }
            }
        }
        // And the kernel-only fields are filled where the column says.
        let filled = |kind, f: Field| {
            f.get(&to_event(full_record(kind), &Clocks::default()))
                .is_some()
        };
        for (kind, f) in [
            (RecordKind::Privilege, Field::PrivilegeNewUid),
            (RecordKind::Ptrace, Field::PtraceRequest),
            (RecordKind::Ptrace, Field::TargetPid),
            (RecordKind::Module, Field::ModuleName),
            (RecordKind::Module, Field::FileExtension),
            (RecordKind::Memfd, Field::FileDirectory),
            (RecordKind::Bpf, Field::BpfProgramType),
            (RecordKind::MemExec, Field::MemoryProtection),
            (RecordKind::Signal, Field::SignalNumber),
            (RecordKind::Accept, Field::SourceIp),
            (RecordKind::Connect, Field::NetworkTransport),
            (RecordKind::FileRename, Field::FileOriginalPath),
        ] {
            assert!(filled(kind, f), "{kind:?} should fill {}", f.name());
        }
        let gid = |syscall| {
            let mut r = full_record(RecordKind::Privilege);
            r.body = Body::Privilege {
                syscall,
                a: 5,
                b: 6,
                c: 7,
            };
            let e = to_event(r, &Clocks::default());
            (
                Field::PrivilegeNewGid.get(&e).is_some(),
                Field::PrivilegeCapabilities.get(&e).is_some(),
            )
        };
        assert_eq!(gid(2), (true, false));
        assert_eq!(gid(6), (true, false));
        assert_eq!(gid(7), (false, true));
        // The source resolves the cgroup id to a container (container::CgroupIds), not this.
        let e = to_event(full_record(RecordKind::Exec), &Clocks::default());
        assert!(Field::ContainerId.get(&e).is_none());
    }

    #[test]
    fn setresuid_with_unchanged_ids() {
        let rec = Record {
            kind: RecordKind::Privilege,
            header: Default::default(),
            body: Body::Privilege {
                syscall: 5,
                a: -1,
                b: 0,
                c: -1,
            },
        };
        let e = to_event(rec, &Clocks::default());
        let p = e.privilege.unwrap_or_default();
        assert_eq!((p.new_uid, p.new_euid), (None, Some(0)));
        assert_eq!(e.syscall.as_deref(), Some("setresuid"));
    }
}
