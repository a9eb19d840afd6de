// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
/*
 * Ringfence's self-protection: BPF LSM programs that refuse, to every process that is not the
 * agent (root included), the things an attacker does first to an endpoint agent:
 *
 *   - a signal that would stop or kill one of the agent's processes (task_kill);
 *   - ptrace attach, /proc/PID/mem writes, process_vm_writev and pidfd_getfd on them
 *     (ptrace_access_check in ATTACH mode; reading /proc stays allowed);
 *   - a write-open, truncate, unlink, rename, link or create on the agent's files and in its
 *     directories (file_open, path_truncate, inode_unlink/rmdir/rename/create/link/symlink/mknod);
 *   - getting a descriptor to the agent's BPF programs, maps and links by id, which is the only
 *     way to detach or rewrite them (bpf: PROG/MAP/LINK_GET_FD_BY_ID).
 *
 * Who is the agent: the tgids in `guard_pids`. The process that launched the supervisor (its
 * service manager, or `ringfence up`), checked by tgid *and* start time so a reused pid is not
 * trusted, may still end the agent: that is how a host shuts down and how an operator stops the
 * service. It signals the supervisor, which stops the worker; and when the stop takes longer than
 * its timeout, systemd kills what is left of the service, and at shutdown systemd-shutdown (still
 * pid 1, same start time) kills every process left. A worker that refused those kills kept the
 * root filesystem from being remounted read-only, so the host rebooted uncleanly (found by the
 * package's guest drill on a starved emulator). The launcher may not stop (freeze) an agent
 * process, which would blind it with the service still up. Everything is off while
 * `guard_cfg.armed` is 0, which is how an authorised uninstall (a signed maintenance token,
 * checked in user space) switches protection off.
 *
 * Each refusal is counted per hook in `guard_denials` and written to the small `guard_ring`, so
 * the agent reports who tried. Loading needs CONFIG_BPF_LSM with `bpf` in the active LSMs; where
 * the kernel refuses (as on kernels that block BPF trampolines), the agent falls back to fanotify
 * permission events and tamper detection.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define FMODE_WRITE 0x2
#define PTRACE_MODE_ATTACH 0x02
#define SIGCHLD 17
#define SIGCONT 18
#define SIGSTOP 19
#define SIGTSTP 20
#define SIGTTIN 21
#define SIGTTOU 22
#define SIGURG 23
#define SIGWINCH 28
#define CMD_PROG_GET_FD_BY_ID 13
#define CMD_MAP_GET_FD_BY_ID 14
#define CMD_LINK_GET_FD_BY_ID 30
#define NSEC_PER_USER_TICK 10000000ULL	/* /proc/PID/stat counts start time in 1/100 s */

/* Hooks, as counted in guard_denials and reported in guard_ring (mirrored in guard.rs). */
enum guard_hook {
	GUARD_SIGNAL = 0,
	GUARD_PTRACE = 1,
	GUARD_WRITE_OPEN = 2,
	GUARD_TRUNCATE = 3,
	GUARD_UNLINK = 4,
	GUARD_RENAME = 5,
	GUARD_CREATE = 6,
	GUARD_BPF = 7,
	GUARD_HOOK_MAX = 8,
};

/* Kinds of BPF object ids in guard_bpf_ids (their id spaces are separate). */
enum guard_object {
	GUARD_PROG = 1,
	GUARD_MAP = 2,
	GUARD_LINK = 3,
};

struct guard_config {
	__u32 armed;
	__u32 launcher_tgid;	/* may end the agent's processes ... */
	__u64 launcher_start;	/* ... if it still started at this tick (/proc/PID/stat field 22) */
};

struct guard_inode {
	__u64 ino;
	__u32 dev;	/* the kernel's dev_t: major << 20 | minor */
	__u32 pad;
};

/*
 * What the agent knows of a protected inode beyond its number: the generation the filesystem
 * gave it (FS_IOC_GETVERSION), when the filesystem reports one. An inode number the agent's
 * deleted file freed may be given to any new file on that filesystem before the agent's next
 * walk drops it; the new file has another generation, so it is not taken for the agent's.
 */
struct guard_inode_val {
	__u32 generation;
	__u32 known;	/* 0: the filesystem reports none; match by number alone */
};

struct guard_bpf_id {
	__u32 kind;
	__u32 id;
};

/* One refusal, for the agent to report. */
struct guard_denial {
	__u64 ts;		/* bpf_ktime_get_boot_ns */
	__u64 detail;		/* target tgid, inode number or object id */
	__u32 hook;		/* enum guard_hook */
	__u32 actor_tgid;
	__u32 actor_tid;
	__s32 arg;		/* signal number, bpf command, or the inode's dev */
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct guard_config);
} guard_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u8);
} guard_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct guard_inode);
	__type(value, struct guard_inode_val);
} guard_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct guard_bpf_id);
	__type(value, __u8);
} guard_bpf_ids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GUARD_HOOK_MAX);
	__type(key, __u32);
	__type(value, __u64);
} guard_denials SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 10);
} guard_ring SEC(".maps");

/* ---- common -------------------------------------------------------------------------------- */

static __always_inline struct guard_config *armed_config(void)
{
	__u32 zero = 0;
	struct guard_config *cfg = bpf_map_lookup_elem(&guard_cfg, &zero);
	if (!cfg || !cfg->armed)
		return 0;
	return cfg;
}

static __always_inline int is_agent(__u32 tgid)
{
	return bpf_map_lookup_elem(&guard_pids, &tgid) != 0;
}

static __always_inline int current_is_agent(void)
{
	return is_agent(bpf_get_current_pid_tgid() >> 32);
}

static __always_inline int deny(enum guard_hook hook, __u64 detail, __s32 arg)
{
	__u32 key = hook;
	__u64 *count = bpf_map_lookup_elem(&guard_denials, &key);
	if (count)
		*count += 1;
	struct guard_denial *d = bpf_ringbuf_reserve(&guard_ring, sizeof(*d), 0);
	if (d) {
		__u64 id = bpf_get_current_pid_tgid();
		d->ts = bpf_ktime_get_boot_ns();
		d->detail = detail;
		d->hook = hook;
		d->actor_tgid = id >> 32;
		d->actor_tid = (__u32)id;
		d->arg = arg;
		bpf_get_current_comm(d->comm, sizeof(d->comm));
		bpf_ringbuf_submit(d, 0);
	}
	return -EPERM;
}

static __always_inline int inode_protected(struct inode *inode, struct guard_inode *key)
{
	if (!inode)
		return 0;
	key->ino = BPF_CORE_READ(inode, i_ino);
	key->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	key->pad = 0;
	struct guard_inode_val *val = bpf_map_lookup_elem(&guard_inodes, key);
	if (!val)
		return 0;
	/* The number reused by a new file (see struct guard_inode_val) is not the agent's. */
	if (val->known && val->generation != BPF_CORE_READ(inode, i_generation))
		return 0;
	return 1;
}

/* Refuse a change to `inode` (may be null) or inside directory `dir` (may be null). */
static __always_inline int guard_change(enum guard_hook hook, struct inode *dir,
					struct inode *inode)
{
	if (!armed_config() || current_is_agent())
		return 0;
	struct guard_inode key = {};
	if (inode_protected(inode, &key) || inode_protected(dir, &key))
		return deny(hook, key.ino, key.dev);
	return 0;
}

static __always_inline struct inode *dentry_inode(struct dentry *dentry)
{
	return dentry ? BPF_CORE_READ(dentry, d_inode) : 0;
}

/* ---- processes ----------------------------------------------------------------------------- */

SEC("lsm/task_kill")
int BPF_PROG(guard_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred)
{
	if (sig == 0 || sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH)
		return 0;
	struct guard_config *cfg = armed_config();
	if (!cfg)
		return 0;
	__u32 target = BPF_CORE_READ(p, tgid);
	if (!is_agent(target) || current_is_agent())
		return 0;
	__u32 actor = bpf_get_current_pid_tgid() >> 32;
	int stops = sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU;
	if (actor == cfg->launcher_tgid && !stops) {
		struct task_struct *me = (struct task_struct *)bpf_get_current_task_btf();
		__u64 start = BPF_CORE_READ(me, group_leader, start_boottime) / NSEC_PER_USER_TICK;
		if (start == cfg->launcher_start)
			return 0;
	}
	return deny(GUARD_SIGNAL, target, sig);
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(guard_ptrace, struct task_struct *child, unsigned int mode)
{
	if (!(mode & PTRACE_MODE_ATTACH) || !armed_config())
		return 0;
	__u32 target = BPF_CORE_READ(child, tgid);
	if (!is_agent(target) || current_is_agent())
		return 0;
	return deny(GUARD_PTRACE, target, mode);
}

/* ---- files --------------------------------------------------------------------------------- */

SEC("lsm/file_open")
int BPF_PROG(guard_file_open, struct file *file)
{
	if (!(BPF_CORE_READ(file, f_mode) & FMODE_WRITE))
		return 0;
	return guard_change(GUARD_WRITE_OPEN, 0, BPF_CORE_READ(file, f_inode));
}

SEC("lsm/path_truncate")
int BPF_PROG(guard_path_truncate, const struct path *path)
{
	return guard_change(GUARD_TRUNCATE, 0, dentry_inode(BPF_CORE_READ(path, dentry)));
}

SEC("lsm/inode_unlink")
int BPF_PROG(guard_inode_unlink, struct inode *dir, struct dentry *dentry)
{
	return guard_change(GUARD_UNLINK, dir, dentry_inode(dentry));
}

SEC("lsm/inode_rmdir")
int BPF_PROG(guard_inode_rmdir, struct inode *dir, struct dentry *dentry)
{
	return guard_change(GUARD_UNLINK, dir, dentry_inode(dentry));
}

SEC("lsm/inode_rename")
int BPF_PROG(guard_inode_rename, struct inode *old_dir, struct dentry *old_dentry,
	     struct inode *new_dir, struct dentry *new_dentry)
{
	int rc = guard_change(GUARD_RENAME, old_dir, dentry_inode(old_dentry));
	if (rc)
		return rc;
	return guard_change(GUARD_RENAME, new_dir, dentry_inode(new_dentry));
}

SEC("lsm/inode_create")
int BPF_PROG(guard_inode_create, struct inode *dir, struct dentry *dentry, umode_t mode)
{
	return guard_change(GUARD_CREATE, dir, 0);
}

SEC("lsm/inode_link")
int BPF_PROG(guard_inode_link, struct dentry *old_dentry, struct inode *dir,
	     struct dentry *new_dentry)
{
	return guard_change(GUARD_CREATE, dir, dentry_inode(old_dentry));
}

SEC("lsm/inode_symlink")
int BPF_PROG(guard_inode_symlink, struct inode *dir, struct dentry *dentry, const char *name)
{
	return guard_change(GUARD_CREATE, dir, 0);
}

SEC("lsm/inode_mknod")
int BPF_PROG(guard_inode_mknod, struct inode *dir, struct dentry *dentry, umode_t mode,
	     dev_t dev)
{
	return guard_change(GUARD_CREATE, dir, 0);
}

/* ---- BPF objects --------------------------------------------------------------------------- */

SEC("lsm/bpf")
int BPF_PROG(guard_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	struct guard_bpf_id key = {};
	switch (cmd) {
	case CMD_PROG_GET_FD_BY_ID:
		key.kind = GUARD_PROG;
		break;
	case CMD_MAP_GET_FD_BY_ID:
		key.kind = GUARD_MAP;
		break;
	case CMD_LINK_GET_FD_BY_ID:
		key.kind = GUARD_LINK;
		break;
	default:
		return 0;
	}
	if (!armed_config() || current_is_agent())
		return 0;
	/* prog_id, map_id and link_id share the first word of this part of the union. */
	key.id = BPF_CORE_READ(attr, prog_id);
	if (!bpf_map_lookup_elem(&guard_bpf_ids, &key))
		return 0;
	return deny(GUARD_BPF, key.id, cmd);
}
