// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Ringfence's sensor programs: process, network, file and tamper-relevant activity, written to
 * one ring buffer as the records of ringfence.h.
 *
 * Each syscall program comes twice: on the syscall tracepoint, and as fentry (or fexit) on the
 * syscall's own entry function `__x64_sys_<name>`, both calling one body with the same
 * arguments, so the records are identical. An attached syscall tracepoint puts every task on the
 * kernel's syscall slow path; a trampoline costs only the calls of that one function. The loader
 * tries the trampoline first (many hardened kernels refuse them: EPERM), then the kinds' hooks
 * off the syscall path (sched, sock and signal tracepoints, module_load), then, only in the deep
 * profile, the syscall tracepoints. Every program filters in the kernel before it copies anything: event kinds switched off in
 * `rf_cfg`, ignored pids and comms, and (for files) the watched path prefixes. Records are
 * written without a wake-up; the reader is woken only when it has parked (see emit). A record
 * that does not fit is counted per kind in the per-CPU `drops` array.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "ringfence.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10
#define AT_FDCWD -100
#define PROT_EXEC 0x4
#define MAP_ANONYMOUS 0x20
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFREG 0100000
#define FMODE_WRITE 0x2
#define O_ACCMODE 3
#define O_WRONLY 1
#define O_RDWR 2
#define FMODE_CREATED 0x100000
#define BPF_PROG_LOAD_CMD 5
#define BPF_PROG_GET_FD_BY_ID_CMD 13
#define BPF_MAP_GET_FD_BY_ID_CMD 14
#define BPF_LINK_GET_FD_BY_ID_CMD 30
#define PTRACE_TRACEME 0
#define PTRACE_POKETEXT 4
#define PTRACE_POKEDATA 5
#define PTRACE_POKEUSER 6
#define PTRACE_SETREGS 13
#define PTRACE_ATTACH 16
#define PTRACE_SEIZE 0x4206

/* ---- maps ---------------------------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RF_KIND_MAX);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rf_config);
} rf_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} ignored_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, char[RF_COMM_LEN]);
	__type(value, __u8);
} ignored_comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} protected_pids SEC(".maps");

/* The agent's own BPF programs, maps and links ({kind, id}: 1 program, 2 map, 3 link): a
 * descriptor asked for by id to one of them is reported (the first step of a detach). */
struct rf_object_key {
	__u32 kind;
	__u32 id;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct rf_object_key);
	__type(value, __u8);
} protected_objects SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rf_prefix_key);
	__type(value, __u8);
} watched_prefixes SEC(".maps");

/* Per-CPU scratch: the programs run in process context with migration disabled, and none of
 * them runs from an interrupt, so one buffer per CPU is enough. */
#define RF_PBUF (2 * RF_PATH_MAX)
struct scratch {
	char path[RF_PBUF];	/* paths are built backwards, ending at path[RF_PATH_MAX] */
	char name[RF_NAME_MAX];	/* a user string before it is joined to a directory */
	struct rf_prefix_key key;
	union {
		struct rf_exec exec;
		struct rf_file file;
		struct rf_module module;
		struct rf_memfd memfd;
	};
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} heap SEC(".maps");

/* ---- common -------------------------------------------------------------------------------- */

static __always_inline struct scratch *scratch(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&heap, &zero);
}

static __always_inline void count_drop(__u32 kind)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &kind);
	if (n)
		*n += 1;
}

/* Should a record of `kind` from the current task be skipped? */
static __always_inline bool filtered(__u32 kind)
{
	__u32 zero = 0;
	struct rf_config *cfg = bpf_map_lookup_elem(&rf_cfg, &zero);
	if (cfg && (cfg->kinds_off & (1ULL << (kind & 63))))
		return true;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&ignored_pids, &tgid))
		return true;
	char comm[RF_COMM_LEN] = {};
	bpf_get_current_comm(comm, sizeof(comm));
	if (bpf_map_lookup_elem(&ignored_comms, comm))
		return true;
	return false;
}

static __always_inline void fill_header(struct rf_header *h, __u32 kind, struct task_struct *t)
{
	h->kind = kind;
	h->flags = 0;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->pid = BPF_CORE_READ(t, tgid);
	h->tid = BPF_CORE_READ(t, pid);
	h->ppid = BPF_CORE_READ(t, real_parent, tgid);
	h->uid = BPF_CORE_READ(t, real_cred, uid.val);
	h->gid = BPF_CORE_READ(t, real_cred, gid.val);
	h->euid = BPF_CORE_READ(t, real_cred, euid.val);
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->start_ns = BPF_CORE_READ(t, start_boottime);
	bpf_probe_read_kernel_str(h->comm, sizeof(h->comm), &t->comm);
}

/*
 * fill_header for a task the program was handed as a BTF pointer (the arguments of tp_btf
 * programs): the same fields, read with direct loads (verifier-checked, fault-safe) instead of a
 * helper call each. The process tracepoints run for every fork, exec and exit on the host.
 */
static __always_inline void fill_header_btf(struct rf_header *h, __u32 kind, struct task_struct *t)
{
	h->kind = kind;
	h->flags = 0;
	h->ktime_ns = bpf_ktime_get_boot_ns();
	h->pid = t->tgid;
	h->tid = t->pid;
	h->ppid = t->real_parent->tgid;
	const struct cred *cred = t->real_cred;
	h->uid = cred->uid.val;
	h->gid = cred->gid.val;
	h->euid = cred->euid.val;
	h->cgroup_id = bpf_get_current_cgroup_id();
	h->start_ns = t->start_boottime;
	bpf_probe_read_kernel_str(h->comm, sizeof(h->comm), &t->comm);
}

static __always_inline void fill_current(struct rf_header *h, __u32 kind)
{
	fill_header(h, kind, (struct task_struct *)bpf_get_current_task());
}

/*
 * Send `size` bytes of `rec` without a wake-up, then wake the reader if it has parked: it sets
 * `rf_cfg.reader_parked` before it blocks in poll(2) on an empty ring. The flag is read after the
 * record is committed (the commit is a full barrier) and poll(2) looks at the ring after the
 * reader parked, so one side always sees the other and no record waits behind a sleeping
 * reader. The program that sees the flag clears it, so a burst costs one wake-up; it rides on an
 * empty reservation discarded with BPF_RB_FORCE_WAKEUP (the reader skips discarded space).
 * Records written while the reader drains or rests between batches carry no wake-up: nobody
 * waits for it, and each is an interrupt (on a virtual machine, VM exits) on the writing CPU.
 */
static __always_inline void emit(void *rec, __u64 size, __u32 kind)
{
	__u32 zero = 0;
	((struct rf_header *)rec)->size = size;
	if (bpf_ringbuf_output(&events, rec, size, BPF_RB_NO_WAKEUP))
		count_drop(kind);
	struct rf_config *cfg = bpf_map_lookup_elem(&rf_cfg, &zero);
	if (!cfg || !*(volatile __u64 *)&cfg->reader_parked)
		return;
	cfg->reader_parked = 0;
	void *wake = bpf_ringbuf_reserve(&events, 8, 0);
	if (wake)
		bpf_ringbuf_discard(wake, BPF_RB_FORCE_WAKEUP);
}

/* ---- paths --------------------------------------------------------------------------------- */

/*
 * Rebuild the path of (dentry, vfsmount) backwards into s->path so that it ends at
 * s->path[end]; returns the start offset. Mount points are crossed up to the initial
 * namespace's root, so paths are host paths even inside containers. Deeper than
 * RF_PATH_DEPTH levels or longer than the buffer, the leading part is cut and `*trunc` set.
 */
static __always_inline __u32 build_path(struct scratch *s, struct dentry *d, struct vfsmount *vm,
					__u32 end, __u16 *trunc)
{
	struct mount *mnt = container_of(vm, struct mount, mnt);
	__u32 pos = end;
	for (int i = 0; i < RF_PATH_DEPTH; i++) {
		struct dentry *parent = BPF_CORE_READ(d, d_parent);
		struct dentry *root = BPF_CORE_READ(mnt, mnt.mnt_root);
		bool last = false;
		if (d == root) {
			struct mount *up = BPF_CORE_READ(mnt, mnt_parent);
			if (up == mnt)
				goto done;
			d = BPF_CORE_READ(mnt, mnt_mountpoint);
			mnt = up;
			continue;
		}
		if (d == parent)
			last = true; /* a disconnected dentry (memfd, pipe): its name is the path */
		struct qstr q = BPF_CORE_READ(d, d_name);
		__u32 len = q.len & (RF_NAME_MAX - 1);
		if (len + 1 > pos) {
			*trunc = 1;
			goto done;
		}
		pos -= len + 1;
		pos &= RF_PATH_MAX - 1;
		bpf_probe_read_kernel(&s->path[pos + 1], len, q.name);
		s->path[pos] = '/';
		if (last)
			goto done;
		d = parent;
	}
	*trunc = 1;
done:
	if (pos == end && end > 0) {
		pos = (end - 1) & (RF_PATH_MAX - 1);
		s->path[pos] = '/';
	}
	return pos;
}

/* Copy the built path s->path[pos, end) into `dst` (a RF_PATH_MAX slot); returns the length. */
static __always_inline __u16 take_path(struct scratch *s, __u32 pos, __u32 end, char *dst)
{
	__u32 len = (end - pos) & (RF_PATH_MAX - 1);
	pos &= RF_PATH_MAX - 1;
	bpf_probe_read_kernel(dst, len, &s->path[pos]);
	return len;
}

/* The path of an open file. */
static __always_inline __u16 file_path(struct scratch *s, struct file *f, char *dst, __u16 *trunc)
{
	struct dentry *d = BPF_CORE_READ(f, f_path.dentry);
	struct vfsmount *m = BPF_CORE_READ(f, f_path.mnt);
	__u32 end = RF_PATH_MAX - 1;
	__u32 pos = build_path(s, d, m, end, trunc);
	return take_path(s, pos, end, dst);
}

/* The current task's file for descriptor `fd`, or NULL. */
static __always_inline struct file *fd_file(int fd)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	if (fd < 0 || !fdt || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/*
 * The absolute path a *at() call names: `upath` as is when it starts with '/', otherwise
 * joined to the directory of `dirfd` (or the cwd for AT_FDCWD). `..` is not resolved.
 */
static __always_inline __u16 at_path(struct scratch *s, int dirfd, const char *upath, char *dst,
				     __u16 *trunc)
{
	long n = bpf_probe_read_user_str(s->name, sizeof(s->name), upath);
	if (n <= 1)
		return 0;
	__u32 len = (n - 1) & (RF_NAME_MAX - 1);
	if (s->name[0] == '/') {
		bpf_probe_read_kernel(dst, len, s->name);
		return len;
	}
	__u32 end = RF_PATH_MAX - 1;
	__u32 pos = (end - len) & (RF_PATH_MAX - 1);
	bpf_probe_read_kernel(&s->path[pos], len, s->name);
	if (pos == 0) {
		*trunc = 1;
		return take_path(s, pos, end, dst);
	}
	pos -= 1;
	s->path[pos & (RF_PATH_MAX - 1)] = '/';
	struct dentry *d;
	struct vfsmount *m;
	if (dirfd == AT_FDCWD) {
		struct task_struct *t = (struct task_struct *)bpf_get_current_task();
		d = BPF_CORE_READ(t, fs, pwd.dentry);
		m = BPF_CORE_READ(t, fs, pwd.mnt);
	} else {
		struct file *f = fd_file(dirfd);
		if (!f)
			return take_path(s, pos, end, dst);
		d = BPF_CORE_READ(f, f_path.dentry);
		m = BPF_CORE_READ(f, f_path.mnt);
	}
	pos = build_path(s, d, m, pos & (RF_PATH_MAX - 1), trunc);
	/* A base of "/" came out as "/" + "/name": drop the doubled slash. */
	if (pos + 1 < end && s->path[pos & (RF_PATH_MAX - 1)] == '/' &&
	    s->path[(pos + 1) & (RF_PATH_MAX - 1)] == '/')
		pos += 1;
	return take_path(s, pos, end, dst);
}

/* Is `path` (len bytes) under a watched prefix? */
static __always_inline bool watched(struct scratch *s, const char *path, __u16 len)
{
	__u32 n = len > RF_PREFIX_MAX ? RF_PREFIX_MAX : len;
	s->key.prefixlen = n * 8;
	bpf_probe_read_kernel(s->key.data, n & (RF_PREFIX_MAX - 1 | RF_PREFIX_MAX), path);
	return bpf_map_lookup_elem(&watched_prefixes, &s->key) != NULL;
}

/* ---- process ------------------------------------------------------------------------------- */

SEC("tp_btf/sched_process_exec")
int BPF_PROG(rf_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	if (filtered(RF_EXEC))
		return 0;
	struct scratch *s = scratch();
	if (!s)
		return 0;
	struct rf_exec *e = &s->exec;
	fill_header_btf(&e->h, RF_EXEC, p);
	__u16 trunc = 0;

	struct file *f = bprm->file;
	e->exe_len = file_path(s, f, &e->data[RF_EXEC_EXE_OFF], &trunc);

	struct fs_struct *fs = p->fs;
	struct dentry *d = fs->pwd.dentry;
	struct vfsmount *m = fs->pwd.mnt;
	__u32 end = RF_PATH_MAX - 1;
	__u32 pos = build_path(s, d, m, end, &trunc);
	e->cwd_len = take_path(s, pos, end, &e->data[RF_EXEC_CWD_OFF]);

	struct mm_struct *mm = p->mm;
	unsigned long start = mm->arg_start;
	unsigned long stop = mm->arg_end;
	e->argc = bprm->argc;
	__u64 n = stop > start ? stop - start : 0;
	if (n > RF_ARGS_MAX) {
		n = RF_ARGS_MAX;
		trunc = 1;
	}
	n &= RF_ARGS_MAX - 1 | RF_ARGS_MAX;
	if (n && bpf_probe_read_user(&e->data[RF_EXEC_ARGS_OFF], n, (void *)start))
		n = 0;
	e->args_len = n;
	e->h.flags = trunc ? RF_F_TRUNCATED : 0;
	emit(e, offsetof(struct rf_exec, data) + RF_EXEC_ARGS_OFF + n, RF_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(rf_fork, struct task_struct *parent, struct task_struct *child)
{
	/* New processes only: a thread shares its parent's tgid. */
	if (child->pid != child->tgid)
		return 0;
	if (filtered(RF_FORK))
		return 0;
	struct rf_header h = {};
	fill_header_btf(&h, RF_FORK, child);
	/* The child's real_parent may be a reaper (CLONE_PARENT); the forking process is the
	 * parent we report. */
	h.ppid = parent->tgid;
	emit(&h, sizeof(h), RF_FORK);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(rf_exit, struct task_struct *p, bool group_dead)
{
	/* Once per process: the thread-group leader. */
	if (p->pid != p->tgid)
		return 0;
	if (filtered(RF_EXIT))
		return 0;
	struct rf_exit e = {};
	fill_header_btf(&e.h, RF_EXIT, p);
	e.exit_code = p->exit_code;
	emit(&e, sizeof(e), RF_EXIT);
	return 0;
}

/* ---- one body, two hooks ------------------------------------------------------------------ */

/*
 * The first four syscall arguments from the user registers a syscall entry function receives.
 * `regs` is the traced function's own argument, a BTF pointer: the fields are read with direct
 * (verifier-checked, fault-safe) loads, not a helper call each, which every traced syscall would
 * pay whether or not its event is wanted.
 */
#define FE_ARGS(regs)                                                                            \
	PT_REGS_PARM1_SYSCALL(regs), PT_REGS_PARM2_SYSCALL(regs), PT_REGS_PARM3_SYSCALL(regs),   \
		PT_REGS_PARM4_SYSCALL(regs)

/* `prog` on sys_enter_<sys>, and `prog`_fe as fentry on __x64_sys_<sys>: both run
 * `prog`_body(a0, a1, a2, a3). */
#define SYS_ENTER(prog, sys)                                                                     \
	SEC("tracepoint/syscalls/sys_enter_" #sys)                                               \
	int prog(struct trace_event_raw_sys_enter *ctx)                                          \
	{                                                                                        \
		return prog##_body(ctx->args[0], ctx->args[1], ctx->args[2], ctx->args[3]);     \
	}                                                                                        \
	SEC("fentry/__x64_sys_" #sys)                                                            \
	int BPF_PROG(prog##_fe, struct pt_regs *regs)                                            \
	{                                                                                        \
		return prog##_body(FE_ARGS(regs));                                               \
	}

/* `prog` on sys_exit_<sys>, and `prog`_fx as fexit on __x64_sys_<sys>: both run
 * `prog`_body(return value). */
#define SYS_EXIT(prog, sys)                                                                      \
	SEC("tracepoint/syscalls/sys_exit_" #sys)                                                \
	int prog(struct trace_event_raw_sys_exit *ctx)                                           \
	{                                                                                        \
		return prog##_body(ctx->ret);                                                    \
	}                                                                                        \
	SEC("fexit/__x64_sys_" #sys)                                                             \
	int BPF_PROG(prog##_fx, struct pt_regs *regs, long ret)                                  \
	{                                                                                        \
		return prog##_body(ret);                                                         \
	}

#define U64 __u64 a0, __u64 a1, __u64 a2, __u64 a3

/* ---- network ------------------------------------------------------------------------------- */

/* The head of a sockaddr_in or sockaddr_in6: family, port (network order), then the IPv4
 * address or the IPv6 flow info. */
struct sockaddr_head {
	__u16 family;
	__u16 port;
	__u8 v4[4];
};

/* The sock behind `fd` when it is a socket. */
static __always_inline struct sock *fd_sock(int fd)
{
	struct file *f = fd_file(fd);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *sock = BPF_CORE_READ(f, private_data);
	return BPF_CORE_READ(sock, sk);
}

/* connect/bind: the address the call passed. */
static __always_inline void net_user_addr(__u32 kind, int fd, const void *uaddr)
{
	if (filtered(kind))
		return;
	struct sockaddr_head sa = {};
	if (bpf_probe_read_user(&sa, sizeof(sa), uaddr))
		return;
	if (sa.family != AF_INET && sa.family != AF_INET6)
		return;
	struct rf_net e = {};
	if (sa.family == AF_INET)
		__builtin_memcpy(e.daddr, sa.v4, 4);
	else if (bpf_probe_read_user(e.daddr, 16, uaddr + 8))
		return;
	fill_current(&e.h, kind);
	e.family = sa.family;
	e.fd = fd;
	e.dport = bpf_ntohs(sa.port);
	struct sock *sk = fd_sock(fd);
	if (sk)
		e.protocol = BPF_CORE_READ(sk, sk_protocol);
	emit(&e, sizeof(e), kind);
}

/* accept/listen: the addresses the socket holds. */
static __always_inline void net_sock(__u32 kind, int fd)
{
	if (filtered(kind))
		return;
	struct sock *sk = fd_sock(fd);
	if (!sk)
		return;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return;
	struct rf_net e = {};
	fill_current(&e.h, kind);
	e.family = family;
	e.fd = fd;
	e.protocol = BPF_CORE_READ(sk, sk_protocol);
	e.dport = BPF_CORE_READ(sk, __sk_common.skc_num);
	if (family == AF_INET) {
		__u32 local = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		__builtin_memcpy(e.daddr, &local, 4);
		if (kind == RF_ACCEPT) {
			__u32 peer = BPF_CORE_READ(sk, __sk_common.skc_daddr);
			__builtin_memcpy(e.saddr, &peer, 4);
		}
	} else {
		BPF_CORE_READ_INTO(&e.daddr, sk, __sk_common.skc_v6_rcv_saddr);
		if (kind == RF_ACCEPT)
			BPF_CORE_READ_INTO(&e.saddr, sk, __sk_common.skc_v6_daddr);
	}
	if (kind == RF_ACCEPT)
		e.sport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	emit(&e, sizeof(e), kind);
}

static __always_inline int rf_connect_body(U64)
{
	net_user_addr(RF_CONNECT, a0, (const void *)a1);
	return 0;
}
SYS_ENTER(rf_connect, connect)

static __always_inline int rf_bind_body(U64)
{
	net_user_addr(RF_BIND, a0, (const void *)a1);
	return 0;
}
SYS_ENTER(rf_bind, bind)

static __always_inline int rf_listen_body(U64)
{
	net_sock(RF_LISTEN, a0);
	return 0;
}
SYS_ENTER(rf_listen, listen)

static __always_inline int rf_accept4_body(long ret)
{
	if (ret >= 0)
		net_sock(RF_ACCEPT, ret);
	return 0;
}
SYS_EXIT(rf_accept4, accept4)

static __always_inline int rf_accept_body(long ret)
{
	if (ret >= 0)
		net_sock(RF_ACCEPT, ret);
	return 0;
}
SYS_EXIT(rf_accept, accept)

/*
 * Off the syscall path: connect(2) and bind(2) of an IPv4 or IPv6 socket, TCP or UDP, from the
 * cgroup socket hooks (attached to the cgroup2 root, so every process; they run in the caller's
 * context before the kernel acts, as the syscall programs do). The record is the syscall
 * programs', but for the descriptor, which the hook does not know (-1). Always allows.
 */
/* `v6` is a constant: each program reads only the address fields its attach type allows. */
static __always_inline int sock_addr(__u32 kind, struct bpf_sock_addr *ctx, bool v6)
{
	__u32 family = ctx->user_family;
	if (family != (v6 ? AF_INET6 : AF_INET))
		return 1;
	if (filtered(kind))
		return 1;
	struct rf_net e = {};
	if (!v6) {
		__u32 a = ctx->user_ip4;
		__builtin_memcpy(e.daddr, &a, 4);
	} else {
		__u32 w0 = ctx->user_ip6[0], w1 = ctx->user_ip6[1];
		__u32 w2 = ctx->user_ip6[2], w3 = ctx->user_ip6[3];
		__builtin_memcpy(&e.daddr[0], &w0, 4);
		__builtin_memcpy(&e.daddr[4], &w1, 4);
		__builtin_memcpy(&e.daddr[8], &w2, 4);
		__builtin_memcpy(&e.daddr[12], &w3, 4);
	}
	fill_current(&e.h, kind);
	e.family = family;
	e.fd = -1;
	e.dport = bpf_ntohs((__u16)ctx->user_port);
	e.protocol = ctx->protocol;
	emit(&e, sizeof(e), kind);
	return 1;
}

SEC("cgroup/connect4")
int rf_cg_connect4(struct bpf_sock_addr *ctx)
{
	return sock_addr(RF_CONNECT, ctx, false);
}

SEC("cgroup/connect6")
int rf_cg_connect6(struct bpf_sock_addr *ctx)
{
	return sock_addr(RF_CONNECT, ctx, true);
}

SEC("cgroup/bind4")
int rf_cg_bind4(struct bpf_sock_addr *ctx)
{
	return sock_addr(RF_BIND, ctx, false);
}

SEC("cgroup/bind6")
int rf_cg_bind6(struct bpf_sock_addr *ctx)
{
	return sock_addr(RF_BIND, ctx, true);
}

/*
 * Off the syscall path: a TCP socket's state changes, in the context of the process that causes
 * them. CLOSE -> SYN_SENT is a connect(2) (tcp_v4_connect and tcp_v6_connect set it before the
 * SYN leaves). The record is the one the syscall program writes, but for the descriptor, which
 * the socket does not know (-1). listen(2) sets its state without this tracepoint.
 */
static __always_inline int sock_connect(const struct sock *sk)
{
	if (BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (filtered(RF_CONNECT))
		return 0;
	struct rf_net e = {};
	fill_current(&e.h, RF_CONNECT);
	e.family = family;
	e.fd = -1;
	e.protocol = IPPROTO_TCP;
	e.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		__u32 peer = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e.daddr, &peer, 4);
	} else {
		BPF_CORE_READ_INTO(&e.daddr, sk, __sk_common.skc_v6_daddr);
	}
	emit(&e, sizeof(e), RF_CONNECT);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(rf_sock_connect, const struct sock *sk, const int oldstate, const int newstate)
{
	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT)
		return sock_connect(sk);
	return 0;
}

/* ---- files --------------------------------------------------------------------------------- */

/* Report `f`, just opened with f_mode `mode`, when it is a regular file opened for writing under
 * a watched prefix (a device or FIFO written to is no file modified). */
static __always_inline void report_opened(struct file *f, unsigned int mode, unsigned int i_mode)
{
	if (!(mode & FMODE_WRITE) || (i_mode & S_IFMT) != S_IFREG)
		return;
	__u32 kind = (mode & FMODE_CREATED) ? RF_FILE_CREATE : RF_FILE_MODIFY;
	if (filtered(kind))
		return;
	struct scratch *s = scratch();
	if (!s)
		return;
	struct rf_file *e = &s->file;
	__u16 trunc = 0;
	e->path_len = file_path(s, f, &e->data[0], &trunc);
	if (!watched(s, e->data, e->path_len))
		return;
	fill_current(&e->h, kind);
	e->h.flags = trunc ? RF_F_TRUNCATED : 0;
	e->syscall = RF_SYS_NONE;
	e->old_len = 0;
	emit(e, offsetof(struct rf_file, data) + RF_PATH_MAX, kind);
}

/* After an open syscall: report files opened for writing under a watched prefix. */
static __always_inline void file_opened(long ret)
{
	if (ret < 0)
		return;
	struct file *f = fd_file(ret);
	if (!f)
		return;
	report_opened(f, BPF_CORE_READ(f, f_mode), BPF_CORE_READ(f, f_inode, i_mode));
}

/* The kernel before 6.13 counted a file's references in `f_count`. */
struct file___f_count {
	atomic_long_t f_count;
} __attribute__((preserve_access_index));

/* Whether `f` has one reference, the one a new open holds: a file just opened, not one
 * duplicated (dup, F_DUPFD) or received (SCM_RIGHTS, pidfd_getfd), which hold two or more when
 * installed. Unknown counter layouts say yes. */
static __always_inline bool one_reference(struct file *f)
{
	if (bpf_core_field_exists(struct file___f_count, f_count))
		return BPF_CORE_READ((struct file___f_count *)f, f_count.counter) == 1;
	if (bpf_core_field_exists(f->f_ref))
		/* file_ref_t counts from 0 for one reference (FILE_REF_ONEREF). */
		return BPF_CORE_READ(f, f_ref.refcnt.counter) == 0;
	return true;
}

/*
 * Every new descriptor, as it is installed: one trampoline on entry (cheaper than one on the
 * return of each open syscall) for every way a file is opened into a descriptor table: open,
 * openat, openat2, creat, open_by_handle_at, and io_uring's openat, which no syscall hook sees.
 * Read-only opens, sockets and pipes stop at the first two loads.
 */
SEC("fentry/fd_install")
int BPF_PROG(rf_fd_install_fe, unsigned int fd, struct file *file)
{
	unsigned int mode = file->f_mode;
	if (!(mode & FMODE_WRITE) || (file->f_inode->i_mode & S_IFMT) != S_IFREG)
		return 0;
	if (!one_reference(file))
		return 0;
	report_opened(file, mode, S_IFREG);
	return 0;
}

/*
 * Whether the open now returning asked for write access: its flags are still in the saved user
 * registers (argument `n`, 2 or 3). Read-only opens, nearly all of them, stop here before any
 * file is looked up; FMODE_WRITE, checked after, follows from exactly these access modes.
 */
static __always_inline bool flags_write(unsigned long flags)
{
	__u32 acc = flags & O_ACCMODE;
	return acc == O_WRONLY || acc == O_RDWR;
}

static __always_inline bool open_flags_write(int n)
{
	/* A BTF pointer: read directly (a checked load), no helper call. */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(bpf_get_current_task_btf());
	return flags_write(n == 2 ? PT_REGS_PARM2_SYSCALL(regs) : PT_REGS_PARM3_SYSCALL(regs));
}

SEC("tracepoint/syscalls/sys_exit_openat")
int rf_openat(struct trace_event_raw_sys_exit *ctx)
{
	if (open_flags_write(3))
		file_opened(ctx->ret);
	return 0;
}

SEC("fexit/__x64_sys_openat")
int BPF_PROG(rf_openat_fx, struct pt_regs *regs, long ret)
{
	if (flags_write(PT_REGS_PARM3_SYSCALL(regs)))
		file_opened(ret);
	return 0;
}

static __always_inline int rf_openat2_body(long ret)
{
	file_opened(ret);
	return 0;
}
SYS_EXIT(rf_openat2, openat2)

SEC("tracepoint/syscalls/sys_exit_open")
int rf_open(struct trace_event_raw_sys_exit *ctx)
{
	if (open_flags_write(2))
		file_opened(ctx->ret);
	return 0;
}

SEC("fexit/__x64_sys_open")
int BPF_PROG(rf_open_fx, struct pt_regs *regs, long ret)
{
	if (flags_write(PT_REGS_PARM2_SYSCALL(regs)))
		file_opened(ret);
	return 0;
}

static __always_inline int rf_creat_body(long ret)
{
	file_opened(ret);
	return 0;
}
SYS_EXIT(rf_creat, creat)

/* Before an unlink or rmdir: the named path, when watched. */
static __always_inline void file_unlink(__u32 sys, int dirfd, const char *upath)
{
	if (filtered(RF_FILE_DELETE))
		return;
	struct scratch *s = scratch();
	if (!s)
		return;
	struct rf_file *e = &s->file;
	__u16 trunc = 0;
	e->path_len = at_path(s, dirfd, upath, &e->data[0], &trunc);
	if (!e->path_len || !watched(s, e->data, e->path_len))
		return;
	fill_current(&e->h, RF_FILE_DELETE);
	e->h.flags = trunc ? RF_F_TRUNCATED : 0;
	e->syscall = sys;
	e->old_len = 0;
	emit(e, offsetof(struct rf_file, data) + RF_PATH_MAX, RF_FILE_DELETE);
}

static __always_inline int rf_unlinkat_body(U64)
{
	file_unlink(RF_SYS_UNLINKAT, a0, (const char *)a1);
	return 0;
}
SYS_ENTER(rf_unlinkat, unlinkat)

static __always_inline int rf_unlink_body(U64)
{
	file_unlink(RF_SYS_UNLINK, AT_FDCWD, (const char *)a0);
	return 0;
}
SYS_ENTER(rf_unlink, unlink)

static __always_inline int rf_rmdir_body(U64)
{
	file_unlink(RF_SYS_RMDIR, AT_FDCWD, (const char *)a0);
	return 0;
}
SYS_ENTER(rf_rmdir, rmdir)

/* Before a rename: both paths, when either is watched. */
static __always_inline void file_rename(__u32 sys, int olddfd, const char *oldp, int newdfd,
					const char *newp)
{
	if (filtered(RF_FILE_RENAME))
		return;
	struct scratch *s = scratch();
	if (!s)
		return;
	struct rf_file *e = &s->file;
	__u16 trunc = 0;
	e->old_len = at_path(s, olddfd, oldp, &e->data[RF_PATH_MAX], &trunc);
	e->path_len = at_path(s, newdfd, newp, &e->data[0], &trunc);
	if (!watched(s, e->data, e->path_len) &&
	    !watched(s, &e->data[RF_PATH_MAX], e->old_len))
		return;
	fill_current(&e->h, RF_FILE_RENAME);
	e->h.flags = trunc ? RF_F_TRUNCATED : 0;
	e->syscall = sys;
	emit(e, sizeof(*e), RF_FILE_RENAME);
}

static __always_inline int rf_renameat2_body(U64)
{
	file_rename(RF_SYS_RENAMEAT2, a0, (const char *)a1, a2,
		    (const char *)a3);
	return 0;
}
SYS_ENTER(rf_renameat2, renameat2)

static __always_inline int rf_renameat_body(U64)
{
	file_rename(RF_SYS_RENAMEAT, a0, (const char *)a1, a2,
		    (const char *)a3);
	return 0;
}
SYS_ENTER(rf_renameat, renameat)

static __always_inline int rf_rename_body(U64)
{
	file_rename(RF_SYS_RENAME, AT_FDCWD, (const char *)a0, AT_FDCWD,
		    (const char *)a1);
	return 0;
}
SYS_ENTER(rf_rename, rename)

/* ---- privilege ----------------------------------------------------------------------------- */

/* The ids arrive as unsigned longs; -1 (unchanged) must stay -1. */
#define ID(x) ((__s64)(__s32)(x))

/*
 * Whether a set*uid (`uids`) or set*gid call with these ids changes nothing: the process holds
 * one id everywhere (real, effective, saved, filesystem) and the call names only that id, or -1.
 * Such calls (a service dropping privileges it does not have) are no privilege change, and the
 * process connector does not report them either; any call that could change an id still is.
 */
static __always_inline bool ids_unchanged(bool uids, __s64 a, __s64 b, __s64 c)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	const struct cred *cred = BPF_CORE_READ(t, real_cred);
	__u32 r, e, s, fs;
	if (uids) {
		r = BPF_CORE_READ(cred, uid.val);
		e = BPF_CORE_READ(cred, euid.val);
		s = BPF_CORE_READ(cred, suid.val);
		fs = BPF_CORE_READ(cred, fsuid.val);
	} else {
		r = BPF_CORE_READ(cred, gid.val);
		e = BPF_CORE_READ(cred, egid.val);
		s = BPF_CORE_READ(cred, sgid.val);
		fs = BPF_CORE_READ(cred, fsgid.val);
	}
	if (r != e || r != s || r != fs)
		return false;
	__s64 id = ID(r);
	return (a == -1 || a == id) && (b == -1 || b == id) && (c == -1 || c == id);
}

static __always_inline void priv(__u32 sys, __s64 a, __s64 b, __s64 c)
{
	if (sys != RF_SYS_CAPSET) {
		bool uids = sys == RF_SYS_SETUID || sys == RF_SYS_SETREUID || sys == RF_SYS_SETRESUID;
		if (ids_unchanged(uids, a, b, c))
			return;
	}
	if (filtered(RF_PRIVILEGE))
		return;
	struct rf_priv e = {};
	fill_current(&e.h, RF_PRIVILEGE);
	e.syscall = sys;
	e.a = a;
	e.b = b;
	e.c = c;
	emit(&e, sizeof(e), RF_PRIVILEGE);
}

static __always_inline int rf_setuid_body(U64)
{
	priv(RF_SYS_SETUID, ID(a0), -1, -1);
	return 0;
}
SYS_ENTER(rf_setuid, setuid)

static __always_inline int rf_setgid_body(U64)
{
	priv(RF_SYS_SETGID, ID(a0), -1, -1);
	return 0;
}
SYS_ENTER(rf_setgid, setgid)

static __always_inline int rf_setreuid_body(U64)
{
	priv(RF_SYS_SETREUID, ID(a0), ID(a1), -1);
	return 0;
}
SYS_ENTER(rf_setreuid, setreuid)

static __always_inline int rf_setregid_body(U64)
{
	priv(RF_SYS_SETREGID, ID(a0), ID(a1), -1);
	return 0;
}
SYS_ENTER(rf_setregid, setregid)

static __always_inline int rf_setresuid_body(U64)
{
	priv(RF_SYS_SETRESUID, ID(a0), ID(a1), ID(a2));
	return 0;
}
SYS_ENTER(rf_setresuid, setresuid)

static __always_inline int rf_setresgid_body(U64)
{
	priv(RF_SYS_SETRESGID, ID(a0), ID(a1), ID(a2));
	return 0;
}
SYS_ENTER(rf_setresgid, setresgid)

static __always_inline int rf_capset_body(U64)
{
	/* capset(header, data): data is two {effective, permitted, inheritable} u32 triples for
	 * the 64-bit capability versions. */
	__u32 d[6] = {};
	if (!a1 || bpf_probe_read_user(d, sizeof(d), (void *)a1))
		return 0;
	priv(RF_SYS_CAPSET, (__s64)((__u64)d[0] | (__u64)d[3] << 32),
	     (__s64)((__u64)d[1] | (__u64)d[4] << 32), (__s64)((__u64)d[2] | (__u64)d[5] << 32));
	return 0;
}
SYS_ENTER(rf_capset, capset)

/* ---- ptrace, modules, bpf, memfd, memory --------------------------------------------------- */

static __always_inline int rf_ptrace_body(U64)
{
	long req = a0;
	/* Attaching and writing requests only; PEEK/CONT/GETREGS would flood under a debugger. */
	if (req != PTRACE_ATTACH && req != PTRACE_SEIZE && req != PTRACE_TRACEME &&
	    req != PTRACE_POKETEXT && req != PTRACE_POKEDATA && req != PTRACE_POKEUSER &&
	    req != PTRACE_SETREGS)
		return 0;
	if (filtered(RF_PTRACE))
		return 0;
	struct rf_ptrace e = {};
	fill_current(&e.h, RF_PTRACE);
	e.request = req;
	e.target_pid = a1;
	emit(&e, sizeof(e), RF_PTRACE);
	return 0;
}
SYS_ENTER(rf_ptrace, ptrace)

static __always_inline void module(__u32 sys, int fd)
{
	if (filtered(RF_MODULE))
		return;
	struct scratch *s = scratch();
	if (!s)
		return;
	struct rf_module *e = &s->module;
	fill_current(&e->h, RF_MODULE);
	e->syscall = sys;
	e->fd = fd;
	e->path_len = 0;
	__u16 trunc = 0;
	if (fd >= 0) {
		struct file *f = fd_file(fd);
		if (f)
			e->path_len = file_path(s, f, e->path, &trunc);
	}
	e->h.flags = trunc ? RF_F_TRUNCATED : 0;
	emit(e, sizeof(*e), RF_MODULE);
}

/* Optional: kernels without module support have neither tracepoint. */
static __always_inline int rf_init_module_body(U64)
{
	module(RF_SYS_INIT_MODULE, -1);
	return 0;
}
SYS_ENTER(rf_init_module, init_module)

static __always_inline int rf_finit_module_body(U64)
{
	module(RF_SYS_FINIT_MODULE, a0);
	return 0;
}
SYS_ENTER(rf_finit_module, finit_module)

/* Off the syscall path: a module the kernel has loaded, by its name (`path`, no descriptor and no
 * syscall: the converter then reports the name and no file). Absent without module support. */
SEC("tp_btf/module_load")
int BPF_PROG(rf_module_load, struct module *mod)
{
	if (filtered(RF_MODULE))
		return 0;
	struct scratch *s = scratch();
	if (!s)
		return 0;
	struct rf_module *e = &s->module;
	fill_current(&e->h, RF_MODULE);
	e->h.flags = 0;
	e->syscall = RF_SYS_NONE;
	e->fd = -1;
	long n = bpf_probe_read_kernel_str(e->path, RF_NAME_MAX, &mod->name);
	e->path_len = n > 0 ? (n - 1) & (RF_NAME_MAX - 1) : 0;
	emit(e, sizeof(*e), RF_MODULE);
	return 0;
}

/* Program loads, and descriptors asked for by id to the agent's own objects. */
static __always_inline int rf_bpf_body(U64)
{
	__u32 cmd = a0;
	const union bpf_attr *attr = (const union bpf_attr *)a1;
	struct rf_object_key key = {};
	switch (cmd) {
	case BPF_PROG_LOAD_CMD:
		break;
	case BPF_PROG_GET_FD_BY_ID_CMD:
		key.kind = 1;
		break;
	case BPF_MAP_GET_FD_BY_ID_CMD:
		key.kind = 2;
		break;
	case BPF_LINK_GET_FD_BY_ID_CMD:
		key.kind = 3;
		break;
	default:
		return 0;
	}
	if (filtered(RF_BPF))
		return 0;
	struct rf_bpf e = {};
	if (key.kind) {
		/* prog_id, map_id and link_id share the first word of this part of the union. */
		if (bpf_probe_read_user(&key.id, sizeof(key.id), &attr->prog_id))
			return 0;
		if (!bpf_map_lookup_elem(&protected_objects, &key))
			return 0;
		e.object_id = key.id;
	} else {
		bpf_probe_read_user(&e.prog_type, sizeof(e.prog_type), &attr->prog_type);
		bpf_probe_read_user(e.prog_name, sizeof(e.prog_name), &attr->prog_name);
	}
	fill_current(&e.h, RF_BPF);
	e.cmd = cmd;
	emit(&e, sizeof(e), RF_BPF);
	return 0;
}
SYS_ENTER(rf_bpf, bpf)

static __always_inline int rf_memfd_create_body(U64)
{
	if (filtered(RF_MEMFD))
		return 0;
	struct scratch *s = scratch();
	if (!s)
		return 0;
	struct rf_memfd *e = &s->memfd;
	fill_current(&e->h, RF_MEMFD);
	e->flags = a1;
	long n = bpf_probe_read_user_str(e->name, sizeof(e->name), (const char *)a0);
	e->name_len = n > 0 ? (n - 1) & (RF_NAME_MAX - 1) : 0;
	emit(e, sizeof(*e), RF_MEMFD);
	return 0;
}
SYS_ENTER(rf_memfd_create, memfd_create)

static __always_inline void memexec(__u32 sys, __u64 addr, __u64 len, __u32 prot, __u32 flags)
{
	if (filtered(RF_MEMEXEC))
		return;
	struct rf_memexec e = {};
	fill_current(&e.h, RF_MEMEXEC);
	e.syscall = sys;
	e.addr = addr;
	e.len = len;
	e.prot = prot;
	e.flags = flags;
	emit(&e, sizeof(e), RF_MEMEXEC);
}

static __always_inline int rf_mmap_body(U64)
{
	__u32 prot = a2;
	__u32 flags = a3;
	if ((prot & PROT_EXEC) && (flags & MAP_ANONYMOUS))
		memexec(RF_SYS_MMAP, a0, a1, prot, flags);
	return 0;
}
SYS_ENTER(rf_mmap, mmap)

static long vma_is_anon(struct task_struct *task, struct vm_area_struct *vma, void *out)
{
	*(bool *)out = BPF_CORE_READ(vma, vm_file) == NULL;
	return 0;
}

static __always_inline int rf_mprotect_body(U64)
{
	__u32 prot = a2;
	if (!(prot & PROT_EXEC))
		return 0;
	bool anon = false;
	if (bpf_find_vma(bpf_get_current_task_btf(), a0, vma_is_anon, &anon, 0) || !anon)
		return 0;
	memexec(RF_SYS_MPROTECT, a0, a1, prot, 0);
	return 0;
}
SYS_ENTER(rf_mprotect, mprotect)

/* ---- signals aimed at the agent ------------------------------------------------------------ */

static __always_inline void signal(__u32 sys, __u32 target, int sig)
{
	if (sig == 0 || !bpf_map_lookup_elem(&protected_pids, &target))
		return;
	if (filtered(RF_SIGNAL))
		return;
	struct rf_signal e = {};
	fill_current(&e.h, RF_SIGNAL);
	e.syscall = sys;
	e.target_pid = target;
	e.signal = sig;
	emit(&e, sizeof(e), RF_SIGNAL);
}

static __always_inline int rf_kill_body(U64)
{
	int pid = a0;
	if (pid > 0)
		signal(RF_SYS_KILL, pid, a1);
	return 0;
}
SYS_ENTER(rf_kill, kill)

static __always_inline int rf_tkill_body(U64)
{
	int tid = a0;
	if (tid > 0)
		signal(RF_SYS_TKILL, tid, a1);
	return 0;
}
SYS_ENTER(rf_tkill, tkill)

static __always_inline int rf_tgkill_body(U64)
{
	int tgid = a0;
	if (tgid > 0)
		signal(RF_SYS_TGKILL, tgid, a2);
	return 0;
}
SYS_ENTER(rf_tgkill, tgkill)

#define SI_USER 0
#define SI_TKILL -6

/*
 * Off the syscall path: a signal generated for a protected task by kill(2) (SI_USER) or
 * tkill(2)/tgkill(2) (SI_TKILL), in the sender's context. The record is the syscall programs'
 * with the target's process id; tkill and tgkill both report as tgkill (si_code tells them apart
 * from kill only).
 */
SEC("tp_btf/signal_generate")
int BPF_PROG(rf_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task,
	     int group, int result)
{
	if ((unsigned long)info <= 1 || !task)
		return 0;
	int code = BPF_CORE_READ(info, si_code);
	__u32 sys;
	if (code == SI_USER)
		sys = RF_SYS_KILL;
	else if (code == SI_TKILL)
		sys = RF_SYS_TGKILL;
	else
		return 0;
	__u32 tgid = BPF_CORE_READ(task, tgid);
	__u32 tid = BPF_CORE_READ(task, pid);
	if (!bpf_map_lookup_elem(&protected_pids, &tgid) &&
	    !bpf_map_lookup_elem(&protected_pids, &tid))
		return 0;
	if (filtered(RF_SIGNAL))
		return 0;
	struct rf_signal e = {};
	fill_current(&e.h, RF_SIGNAL);
	e.syscall = sys;
	e.target_pid = tgid;
	e.signal = sig;
	emit(&e, sizeof(e), RF_SIGNAL);
	return 0;
}
