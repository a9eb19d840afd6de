#!/usr/bin/env bash
# The kernel matrix: boot Debian's 6.1 (bookworm) and 6.12 (bookworm-backports) cloud kernels
# under qemu (TCG: no KVM needed) with BPF LSM enabled, and run the guest check program
# (crates/ringfence-agent/examples/kernel_check.rs) in each: the eBPF sensor's CO-RE load and
# events against that kernel's BTF, and the BPF LSM guard's refusals (kill, ptrace, write,
# truncate, unlink, rename, create, BPF link by id) and its authorised disarm by a signed
# maintenance token. The same program also runs on this host's kernel. It also checks that each
# kind's events are identical whatever hook it got (fentry, a tracepoint off the syscall path, a
# syscall tracepoint), prints which hook each kind got (`HOOK` lines), and measures what each
# hook choice costs: `bench syscall-storm`/`exec-storm`-style ratios with the sensor loaded and
# its reader converting every record, against none, interleaved (`STORM` lines; TCG slows
# everything alike, the ratio is what matters). RF_NO_STORMS=1 skips the measurements;
# RF_STORM_ROUNDS, RF_STORM_SYSCALLS and RF_STORM_EXECS size them (4, 20000, 100), and
# RF_STORM_POLL_MS sets the reader's pause between drains (5, the agent's default);
# RF_STORM_KINDS_OFF=memory_exec,signal+file_modify adds the default profile without each
# `+`-separated group of kinds, to price their hooks. RF_STORM_RUN_COUNTS=1 first prints how
# often each program of the default profile runs in one exec storm and one syscall storm
# (`RUNS` lines, from the kernel's run statistics). The storms run a release build.
# RF_ICOUNT=1 runs the guests with qemu's instruction counting (`-icount shift=0,sleep=off`, one
# emulated thread): the guest's clock then counts the instructions its CPU executes, not the
# host's time, so a storm's ratio no longer moves with this machine's load. The guest has one
# CPU there, so every instruction of the sensor's reader counts against the storm: the ratio is
# the whole cost in CPU, as on a host with no idle core, not the delay an idle host sees.
#
# Prints `PASS`/`FAIL` per kernel with its duration, then the cost table (kernel x hook choice),
# and exits non-zero on any FAIL.
# Kernels come from Debian's packages (apt-get download + dpkg -x) and are cached in
# target/kernel-matrix/kernels. The guest is a busybox initramfs holding the check program and
# the shared libraries it links (copied from this host, so no static build is needed).
#
#   scripts/kernel-matrix.sh            all kernels
#   KERNELS="6.1" scripts/kernel-matrix.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
work="${RINGFENCE_MATRIX_DIR:-$root/target/kernel-matrix}"
kernels="${KERNELS:-6.1 6.12}"
timeout_secs="${MATRIX_TIMEOUT:-600}"
mkdir -p "$work/kernels"

log() { echo "kernel-matrix: $*" >&2; }

need_packages() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    # The guest's /bin/busybox must not need the host's libraries.
    dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
    command -v cpio >/dev/null || missing+=(cpio)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# apt with an extra suite, in private state (the host's sources stay untouched).
apt_suite() {
    local suite="$1"; shift
    local dir="$work/apt-$suite"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    local opts=(-o "Dir::Etc::SourceList=$dir/sources.list" -o "Dir::Etc::SourceParts=-"
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o APT::Sandbox::User=root -q)
    if [[ ! -f "$dir/sources.list" ]]; then
        echo "deb http://deb.debian.org/debian $suite main" > "$dir/sources.list"
    fi
    if [[ ! -f "$dir/updated" ]]; then
        apt-get "${opts[@]}" update >/dev/null
        touch "$dir/updated"
    fi
    "$@" "${opts[@]}"
}

# The vmlinuz of the newest cloud kernel of a major.minor series, downloaded once.
fetch_kernel() {
    local series="$1" suite
    case "$series" in
        6.1) suite=bookworm ;;
        6.12) suite=bookworm-backports ;;
        *) log "unknown series $series"; return 1 ;;
    esac
    local cached
    cached="$(ls -1 "$work/kernels/$series"/boot/vmlinuz-* 2>/dev/null | head -1 || true)"
    if [[ -n "$cached" ]]; then
        echo "$cached"
        return
    fi
    local pkg
    pkg="$(apt_suite "$suite" apt-cache depends linux-image-cloud-amd64 \
        | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
    if [[ -z "$pkg" ]]; then
        log "no cloud kernel package found in $suite"
        return 1
    fi
    log "downloading $pkg ($suite)"
    (cd "$work/kernels" && apt_suite "$suite" apt-get download "$pkg" >/dev/null)
    rm -rf "$work/kernels/$series"
    dpkg -x "$work/kernels/${pkg}"_*.deb "$work/kernels/$series"
    ls -1 "$work/kernels/$series"/boot/vmlinuz-* | head -1
}

# The checks alone take the debug build `cargo test` has mostly built already; the storms take
# the release build, as the package ships: their reader converts every record, and unoptimized
# it costs several times what the agent's does.
build_check() {
    local target="${CARGO_TARGET_DIR:-$root/target}"
    if [[ -n "${RF_NO_STORMS:-}" ]]; then
        log "building the guest check program"
        (cd "$root" && cargo build -q --locked -p ringfence-agent --example kernel_check)
        echo "$target/debug/examples/kernel_check"
    else
        log "building the guest check program (release: the storms measure its reader)"
        (cd "$root" && cargo build -q --release --locked -p ringfence-agent --example kernel_check)
        echo "$target/release/examples/kernel_check"
    fi
}

build_initramfs() {
    local check="$1" out="$2"
    local dir="$work/initramfs"
    rm -rf "$dir"
    mkdir -p "$dir"/{bin,sbin,proc,sys,dev,tmp,run,etc,root}
    cp /bin/busybox "$dir/bin/busybox"
    objcopy --strip-debug "$check" "$dir/bin/kernel_check"
    # The dynamic loader and libraries the check links, at the same paths.
    ldd "$check" | grep -o '/[^ ]*' | while read -r lib; do
        mkdir -p "$dir$(dirname "$lib")"
        cp -L "$lib" "$dir$lib"
    done
    cat > "$dir/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname rf-guest
echo "guest: $(uname -r), lsm=$(cat /sys/kernel/security/lsm)"
/bin/kernel_check
echo "guest: exit $?"
poweroff -f
EOF
    if [[ -n "${RF_NO_STORMS:-}" ]]; then
        sed -i 's|^/bin/kernel_check$|RF_NO_STORMS=1 /bin/kernel_check|' "$dir/init"
    fi
    # The storms' settings, when given (see the top): numbers, kind names, `,` and `+` only.
    local var value
    for var in RF_STORM_ROUNDS RF_STORM_SYSCALLS RF_STORM_EXECS RF_STORM_POLL_MS \
        RF_STORM_KINDS_OFF RF_STORM_DECODE_ONLY RF_STORM_RUN_COUNTS RF_STORM_NO_READER \
        RF_STORM_RUN_PASSES; do
        value="${!var:-}"
        if [[ "$value" =~ ^[a-z0-9_,+]+$ ]]; then
            sed -i "s|^\(.*\)/bin/kernel_check\$|\1$var=$value /bin/kernel_check|" "$dir/init"
        elif [[ -n "$value" ]]; then
            log "ignoring $var=$value (numbers, kind names, ',' and '+' only)"
        fi
    done
    chmod +x "$dir/init"
    (cd "$dir" && find . | cpio -o -H newc --quiet | gzip -1) > "$out"
}

run_kernel() {
    local name="$1" vmlinuz="$2" initramfs="$3"
    local out="$work/$name.log"
    local start=$SECONDS
    # Under instruction counting the guest has one CPU: with two, these kernels stop while
    # bringing up the second (the virtual clock does not advance).
    local accel=(-accel tcg,thread=multi -smp 2)
    if [[ -n "${RF_ICOUNT:-}" ]]; then
        accel=(-accel tcg,thread=single -icount shift=0,sleep=off -smp 1)
    fi
    local attempt
    for attempt in 1 2; do
        timeout "$timeout_secs" qemu-system-x86_64 \
            "${accel[@]}" -cpu max,-cx16 -m 1024 \
            -nographic -no-reboot -nodefaults -serial stdio \
            -kernel "$vmlinuz" -initrd "$initramfs" \
            -append "console=ttyS0 lsm=lockdown,capability,landlock,yama,bpf panic=-1 quiet" \
            > "$out" 2>&1 || true
        # A kernel that crashed before the init's first line never ran anything of ours: under
        # TCG with two vCPUs, 6.12 has been seen to hit its own text-patching breakpoint at boot
        # (`Oops: int3` in sched_clock_cpu). That one boot is tried again, once, and said so;
        # any crash after the init started is a failure.
        if [[ $attempt == 1 ]] && ! grep -a -q 'guest: ' "$out" \
            && grep -a -q -E 'Kernel panic|Oops:|BUG:' "$out"; then
            mv "$out" "$work/$name.first-boot.log"
            echo "    $name: the kernel crashed while booting, before the init ran; booting it again" \
                "(first boot's log: $work/$name.first-boot.log)"
            continue
        fi
        break
    done
    local took=$((SECONDS - start))
    # The console starts with terminal escapes: match from the marker, not the line start.
    grep -a -o -E '(guest:|CHECK [a-z-]+:|HOOK |RUNS ).*' "$out" | tr -d '\r' | sed 's/^/    /' || true
    grep -a -o -E 'STORM .*' "$out" | tr -d '\r' | sed "s/^/$name /" >> "$work/storms.txt" || true
    if grep -a -q 'KERNEL-CHECK PASS' "$out"; then
        echo "PASS $name ($(grep -a -o 'KERNEL-CHECK PASS.*' "$out" | tr -d '\r' | cut -d' ' -f3)) in ${took} s"
        return 0
    fi
    echo "FAIL $name in ${took} s (log: $out)"
    tail -20 "$out" | sed 's/^/    | /'
    return 1
}

# The cost table from the STORM lines: `<kernel> STORM <choice> syscall-storm R exec-storm R hooks ...`.
print_storms() {
    [[ -s "$1" ]] || return 0
    echo "cost (with the sensor / without; release build, interleaved rounds):"
    printf '  %-10s %-18s %-9s %-9s %s\n' kernel choice syscall exec hooks
    awk '{ h = ""; for (i = 9; i <= NF; i++) h = h " " $i;
           printf "  %-10s %-18s %-9s %-9s%s\n", $1, $3, $5 "x", $7 "x", h }' "$1"
}

main() {
    local started=$SECONDS
    need_packages
    local check initramfs="$work/initramfs.cpio.gz"
    check="$(build_check)"
    build_initramfs "$check" "$initramfs"
    local status=0 start
    : > "$work/storms.txt"
    start=$SECONDS
    if "$check" > "$work/host.log" 2>&1; then
        echo "PASS host ($(uname -r)) in $((SECONDS - start)) s"
    else
        echo "FAIL host ($(uname -r)) (log: $work/host.log)"
        status=1
    fi
    grep -E '^(CHECK|HOOK|RUNS) ' "$work/host.log" | sed 's/^/    /' || true
    grep -E '^STORM ' "$work/host.log" | sed "s/^/host-$(uname -r | cut -d. -f1-2) /" >> "$work/storms.txt" || true
    for series in $kernels; do
        local vmlinuz
        if ! vmlinuz="$(fetch_kernel "$series")"; then
            echo "FAIL $series: kernel not available"
            status=1
            continue
        fi
        run_kernel "$series" "$vmlinuz" "$initramfs" || status=1
    done
    print_storms "$work/storms.txt"
    echo "kernel matrix: $((SECONDS - started)) s in all"
    return $status
}

# Sourced by scripts/deb-boot.sh for its helpers and cache directory: run only when executed.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    main "$@"
fi
