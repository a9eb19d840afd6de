#!/usr/bin/env bash
# Helpers of the Debian guest drill (scripts/deb-boot.sh): the tools it needs, the cached guest
# image, the package, and one boot of the guest under qemu. Sourced, never run.
#
# The guest image is built from Debian packages with mmdebstrap (systemd, the cloud kernel and
# its initramfs) once, and cached beside the kernel matrix's kernels (target/kernel-matrix); a
# change to the package list or the hooks builds a new one. It has a static address on qemu's
# user network (10.0.2.15; the host is 10.0.2.2) and a unit, rf-ci.service, that runs
# /ci/rf-ci.sh from the second disk at every boot.

# shellcheck source=kernel-matrix.sh
source "$root/scripts/kernel-matrix.sh"
suite=bookworm
# Bump the last field to rebuild the image after a change to the customize hooks.
packages="systemd,systemd-sysv,linux-image-cloud-amd64,initramfs-tools,procps,ca-certificates"
image_key="$(echo "$suite $packages 2" | sha256sum | cut -c1-12)"
images="$work/deb-guest"

log() { echo "deb-boot: $*" >&2; }

need_deb_packages() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v mke2fs >/dev/null || missing+=(e2fsprogs)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
    if ! command -v cargo-deb >/dev/null; then
        log "installing cargo-deb"
        cargo install -q cargo-deb --locked
    fi
}

# The guest's root filesystem image, kernel and initramfs (built once per package list).
build_image() {
    local img="$images/$image_key.ext4"
    if [[ -f "$img" && -f "$images/$image_key.vmlinuz" && -f "$images/$image_key.initrd" ]]; then
        return
    fi
    mkdir -p "$images"
    local dir="$images/root-$image_key"
    rm -rf "$dir"
    log "building the guest image ($suite: $packages)"
    mmdebstrap --quiet --variant=apt --include="$packages" \
        --customize-hook='echo rf-guest > "$1/etc/hostname"' \
        --customize-hook='echo "/dev/vda / ext4 rw,errors=remount-ro 0 1" > "$1/etc/fstab"' \
        --customize-hook='mkdir -p "$1/ci"' \
        --customize-hook='cat > "$1/etc/systemd/network/10-ci.network" <<EOF
[Match]
Name=en* eth*
[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
EOF' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd.service' \
        --customize-hook='cat > "$1/etc/systemd/system/rf-ci.service" <<EOF
[Unit]
Description=Ringfence package boot test (the script on the second disk)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c "mount -o ro /dev/vdb /ci && exec /bin/sh /ci/rf-ci.sh"
StandardOutput=journal+console
StandardError=journal+console
[Install]
WantedBy=multi-user.target
EOF' \
        --customize-hook='chroot "$1" systemctl enable rf-ci.service' \
        "$suite" "$dir" >&2
    cp "$(ls -1 "$dir"/boot/vmlinuz-* | head -1)" "$images/$image_key.vmlinuz"
    cp "$(ls -1 "$dir"/boot/initrd.img-* | head -1)" "$images/$image_key.initrd"
    mke2fs -q -t ext4 -L root -d "$dir" "$img.tmp" 2G
    mv "$img.tmp" "$img"
    rm -rf "$dir"
}

# The package: RINGFENCE_DEB, or the debug build packaged by cargo-deb.
build_deb() {
    if [[ -n "${RINGFENCE_DEB:-}" ]]; then
        echo "$RINGFENCE_DEB"
        return
    fi
    (cd "$root" && cargo build -q --locked -p ringfence >&2)
    local out="$work/deb-out"
    rm -rf "$out"
    mkdir -p "$out"
    (cd "$root" && cargo deb -q -p ringfence --no-build --profile dev --fast -o "$out/" 2>/dev/null >&2)
    ls -1 "$out"/ringfence_*.deb | head -1
}

rf_bin="${CARGO_TARGET_DIR:-$root/target}/debug/ringfence"
rf() { "$rf_bin" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Wait up to $1 seconds for the command that follows to succeed.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)); do
        "$@" && return 0
        sleep 1
    done
    "$@"
}

# The guest runs and has not failed. A guest kernel stuck for 5 minutes (a soft lockup; the
# watchdog repeats its report while it lasts) has failed too: nothing it says after would come
# in time.
guest_running() {
    kill -0 "$qemu_pid" 2>/dev/null \
        && ! grep -a -q -E 'RF-CI FAIL|soft lockup - CPU#[0-9]+ stuck for ([3-9][0-9]{2}|[0-9]{4,})s' "$guest_log"
}

# The guest kernel's first report of trouble (a soft lockup, an RCU stall, a panic, a BUG or a
# warning) with the stack trace after it, which the kernel prints at the default log level
# (the guest boots with loglevel=5 so the serial console has it).
first_kernel_report() {
    local line
    line="$(grep -a -n -m1 -E 'soft lockup|rcu: INFO|Kernel panic|BUG:|WARNING:|hung_task|blocked for more than' "$1" | cut -d: -f1 || true)"
    [[ -n "$line" ]] || return 0
    echo "    first kernel report (line $line of $1):"
    tail -n "+$line" "$1" | head -60 | tr -d '\r' | sed 's/^/    | /'
}

# Like wait_until, but gives up at once when the guest failed or ended.
wait_while_guest_runs() {
    local deadline=$((SECONDS + $1))
    shift
    while ((SECONDS < deadline)) && guest_running; do
        "$@" && return 0
        sleep 1
    done
    "$@"
}

# A TCP port nothing listens on here.
free_port() {
    local port
    while true; do
        port=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# The fleet console on the host, in $1: its content keys (the fleet's root, which also signs
# agent releases), HTTPS on loopback with 10.0.2.2 (the host as the guest sees it) in its
# certificate, quick check-ins. Sets console_pid and exports what the CLI needs
# (RINGFENCE_CONSOLE, RINGFENCE_CA_SHA256, RINGFENCE_TOKEN: never on a command line).
start_console() {
    local dir="$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    rf content keys init --dir "$dir/keys" >/dev/null
    console_port="$(free_port)"
    "$rf_bin" console serve --db "sqlite:$dir/console.db" --data "$dir/data" \
        --listen "127.0.0.1:$console_port" --tls-name 10.0.2.2 --content-keys "$dir/keys" \
        --checkin-interval 5s --engine-period 1s --init-operator drill \
        > "$dir/console.log" 2>&1 &
    console_pid=$!
    if ! wait_until 120 grep -q '^CA pin:' "$dir/console.log"; then
        log "the console did not start (log: $dir/console.log)"
        tail -20 "$dir/console.log" >&2
        return 1
    fi
    RINGFENCE_CA_SHA256="$(awk '/^CA pin:/ {print $3; exit}' "$dir/console.log")"
    RINGFENCE_TOKEN="$(awk '/^api token:/ {print $3; exit}' "$dir/console.log")"
    RINGFENCE_CONSOLE="https://127.0.0.1:$console_port"
    export RINGFENCE_CONSOLE RINGFENCE_CA_SHA256 RINGFENCE_TOKEN
}

stop_console() {
    if [[ -n "${console_pid:-}" ]]; then
        kill -INT "$console_pid" 2>/dev/null || true
        wait "$console_pid" 2>/dev/null || true
        console_pid=
    fi
}

# The one agent's field from `fleet agents`: "ID HOST version V content vN last seen MS".
agent_field() {
    rf fleet agents 2>/dev/null | awk -v f="$1" 'NR == 1 {
        if (f == "id") print $1; else if (f == "version") print $4;
        else if (f == "content") print substr($6, 2); else if (f == "last_seen") print $9 }'
}
agent_is() { [[ "$(agent_field "$1")" == "$2" ]]; }
agent_seen_after() {
    local seen
    seen="$(agent_field last_seen)"
    [[ "$seen" =~ ^[0-9]+$ ]] && ((seen > $1))
}

# The guest, booted in the background from the cached image (a copy-on-write snapshot: the
# image stays clean) with the CI disk and qemu's user network. Sets qemu_pid; the serial
# console goes to $2.
boot_guest() {
    local ci_disk="$1" out="$2"
    # The host's half reads it from the start.
    : > "$out"
    # TCG, like the kernel matrix: KVM under nested virtualisation (this CI) aborts on MSRs.
    local accel=(-accel tcg,thread=multi -cpu max,-cx16)
    if [[ "${DEB_BOOT_ACCEL:-tcg}" == kvm ]]; then
        accel=(-accel kvm -cpu host)
    fi
    # snapshot=on: the guest writes to a temporary overlay that lives as long as qemu (the
    # reboot keeps it). restrict=off: the guest reaches the host's loopback as 10.0.2.2.
    # loglevel=5: warnings and stack traces reach the serial console (`quiet` kept only errors:
    # a CI run's guest locked up and its log held the lockup's headlines and no trace).
    timeout "$timeout_secs" qemu-system-x86_64 "${accel[@]}" -smp 2 -m 1024 \
        -nographic -nodefaults -serial stdio \
        -kernel "$images/$image_key.vmlinuz" -initrd "$images/$image_key.initrd" \
        -append "root=/dev/vda rw console=ttyS0 lsm=lockdown,capability,landlock,yama,apparmor,bpf panic=-1 loglevel=5" \
        -drive "file=$images/$image_key.ext4,format=raw,if=virtio,snapshot=on" \
        -drive "file=$ci_disk,format=raw,if=virtio,readonly=on" \
        -netdev user,id=net0 -device virtio-net-pci,netdev=net0,romfile= \
        > "$out" 2>&1 < /dev/null &
    qemu_pid=$!
}

stop_guest() {
    if [[ -n "${qemu_pid:-}" ]]; then
        kill "$qemu_pid" 2>/dev/null || true
        wait "$qemu_pid" 2>/dev/null || true
        qemu_pid=
    fi
}

# Wait up to $2 seconds for the guest to print `RF-CI $1`; fails at once when it printed a
# FAIL or qemu ended.
guest_said() { grep -a -q "RF-CI $1" "$guest_log"; }
wait_guest() {
    wait_while_guest_runs "$2" guest_said "$1" && return 0
    echo "HOST FAIL no \"RF-CI $1\" from the guest (in $2 s)"
    return 1
}
