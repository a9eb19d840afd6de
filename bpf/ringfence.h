/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ringfence's kernel/user contract: the records the sensor programs write to the ring buffer,
 * the map keys and values user space fills, and the limits of every bounded copy.
 *
 * Every record starts with `struct rf_header`; `size` is the number of bytes actually written
 * (records with a variable tail are sent short). All integers are little-endian host order,
 * every struct is naturally aligned with explicit padding, so the Rust decoder in
 * crates/ringfence-sensor/src/ebpf/record.rs reads them field by field at fixed offsets.
 * Change a layout here and there together, and bump RF_ABI_VERSION.
 */
#ifndef RINGFENCE_H
#define RINGFENCE_H

#define RF_ABI_VERSION 2

/* Limits of the bounded copies (all powers of two). */
#define RF_COMM_LEN 16
#define RF_PATH_MAX 512      /* a path slot: longer paths keep their last 511 bytes, flagged */
#define RF_ARGS_MAX 4096     /* argv bytes copied at exec (NUL-separated); the rest is cut, flagged */
#define RF_NAME_MAX 256      /* memfd names, one path component */
#define RF_PREFIX_MAX 128    /* watched path prefixes are matched on the first 128 bytes */
#define RF_PATH_DEPTH 32     /* directory levels walked when a path is rebuilt from dentries */

/* Record kinds; also the index into the `drops` map and the bit in rf_config.kinds_off. */
enum rf_kind {
	RF_KIND_NONE = 0,
	RF_EXEC = 1,
	RF_FORK = 2,
	RF_EXIT = 3,
	RF_CONNECT = 4,
	RF_ACCEPT = 5,
	RF_BIND = 6,
	RF_LISTEN = 7,
	RF_FILE_CREATE = 8,
	RF_FILE_MODIFY = 9,
	RF_FILE_DELETE = 10,
	RF_FILE_RENAME = 11,
	RF_PRIVILEGE = 12,
	RF_PTRACE = 13,
	RF_MODULE = 14,
	RF_BPF = 15,
	RF_MEMFD = 16,
	RF_MEMEXEC = 17,
	RF_SIGNAL = 18,
	RF_KIND_MAX = 19,
};

/* rf_header.flags */
#define RF_F_TRUNCATED 1 /* a path or argv was cut at its limit */

/* The syscall behind a record (rf_*.syscall). */
enum rf_syscall {
	RF_SYS_NONE = 0,
	RF_SYS_SETUID = 1,
	RF_SYS_SETGID = 2,
	RF_SYS_SETREUID = 3,
	RF_SYS_SETREGID = 4,
	RF_SYS_SETRESUID = 5,
	RF_SYS_SETRESGID = 6,
	RF_SYS_CAPSET = 7,
	RF_SYS_MMAP = 8,
	RF_SYS_MPROTECT = 9,
	RF_SYS_KILL = 10,
	RF_SYS_TKILL = 11,
	RF_SYS_TGKILL = 12,
	RF_SYS_INIT_MODULE = 13,
	RF_SYS_FINIT_MODULE = 14,
	RF_SYS_UNLINKAT = 15,
	RF_SYS_UNLINK = 16,
	RF_SYS_RMDIR = 17,
	RF_SYS_RENAMEAT2 = 18,
	RF_SYS_RENAMEAT = 19,
	RF_SYS_RENAME = 20,
};

/* 72 bytes. The subject task: for fork, the child. */
struct rf_header {
	__u16 kind;
	__u16 flags;
	__u32 size;
	__u64 ktime_ns;		/* CLOCK_BOOTTIME */
	__u32 pid;		/* tgid */
	__u32 tid;
	__u32 ppid;		/* real parent's tgid */
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u64 cgroup_id;
	__u64 start_ns;		/* task start, CLOCK_BOOTTIME */
	char comm[RF_COMM_LEN];
};

/* RF_EXEC. `data` holds three slots: executable [0, 512), cwd [512, 1024), argv from 1024;
 * the record is sent cut after argv. Lengths exclude any NUL. */
#define RF_EXEC_EXE_OFF 0
#define RF_EXEC_CWD_OFF RF_PATH_MAX
#define RF_EXEC_ARGS_OFF (2 * RF_PATH_MAX)
struct rf_exec {
	struct rf_header h;
	__u32 argc;		/* from the new mm's argv (all of it, even past the copy) */
	__u16 exe_len;
	__u16 cwd_len;
	__u16 args_len;
	__u16 _pad0;
	__u32 _pad1;
	char data[2 * RF_PATH_MAX + RF_ARGS_MAX];
};

/* RF_FORK: the header is the child; nothing else. RF_EXIT: */
struct rf_exit {
	struct rf_header h;
	__s32 exit_code;	/* raw wait status: (code << 8) | signal */
	__u32 _pad;
};

/* RF_CONNECT, RF_ACCEPT, RF_BIND, RF_LISTEN. Addresses in network order, ports host order.
 * connect and bind carry the address the call passed (as daddr); accept carries the peer
 * (saddr/sport) and the local end (daddr/dport); listen the local end (daddr/dport). */
struct rf_net {
	struct rf_header h;
	__u16 family;		/* AF_INET 2, AF_INET6 10 */
	__u16 protocol;		/* IPPROTO_TCP 6, IPPROTO_UDP 17, 0 unknown */
	__u16 sport;
	__u16 dport;
	__u8 saddr[16];
	__u8 daddr[16];
	__s32 fd;
	__u32 _pad;
};

/* RF_FILE_*: path slot [0, 512); for renames the old path is in [512, 1024). */
struct rf_file {
	struct rf_header h;
	__u32 syscall;
	__u16 path_len;
	__u16 old_len;
	char data[2 * RF_PATH_MAX];
};

/* RF_PRIVILEGE. -1 means "unchanged" (as the syscalls take it). */
struct rf_priv {
	struct rf_header h;
	__u32 syscall;
	__u32 _pad;
	__s64 a;		/* setuid/setgid: the id; set*[r]e*: real; capset: effective mask */
	__s64 b;		/* effective (re/res); capset: permitted mask */
	__s64 c;		/* saved (res); capset: inheritable mask */
};

/* RF_PTRACE */
struct rf_ptrace {
	struct rf_header h;
	__s64 request;
	__u32 target_pid;
	__u32 _pad;
};

/* RF_MODULE: finit_module's file path in `path`; init_module has none. */
struct rf_module {
	struct rf_header h;
	__u32 syscall;
	__s32 fd;
	__u16 path_len;
	__u16 _pad0;
	__u32 _pad1;
	char path[RF_PATH_MAX];
};

/* RF_BPF: bpf(BPF_PROG_LOAD) calls, and descriptors by id to the agent's own objects. */
struct rf_bpf {
	struct rf_header h;
	__u32 cmd;
	__u32 prog_type;	/* prog_load */
	char prog_name[16];	/* prog_load */
	__u32 object_id;	/* *_get_fd_by_id: the agent's object asked for */
	__u32 pad;
};

/* RF_MEMFD */
struct rf_memfd {
	struct rf_header h;
	__u32 flags;
	__u16 name_len;
	__u16 _pad;
	char name[RF_NAME_MAX];
};

/* RF_MEMEXEC: anonymous memory mapped or made executable. */
struct rf_memexec {
	struct rf_header h;
	__u32 syscall;
	__u32 prot;
	__u64 addr;
	__u64 len;
	__u32 flags;		/* mmap flags */
	__u32 _pad;
};

/* RF_SIGNAL: a signal aimed at a protected pid. */
struct rf_signal {
	struct rf_header h;
	__u32 syscall;
	__u32 target_pid;	/* the pid or tid the call named */
	__s32 signal;
	__u32 _pad;
};

/* Map `rf_cfg`, one entry. */
struct rf_config {
	__u64 kinds_off;	/* bit (1 << kind) set: the programs drop that kind before output */
	__u64 reader_parked;	/* 1: the reader blocks (or is about to) on an empty ring; the
				 * next record wakes it and clears this */
};

/* Map `watched_prefixes` (LPM trie) key. */
struct rf_prefix_key {
	__u32 prefixlen;	/* in bits */
	__u8 data[RF_PREFIX_MAX];
};

#endif
