#!/usr/bin/env bash
# The package boot test: the .deb installed on a Debian 12 guest that boots with systemd under
# qemu, the way an operator installs it. Checks that
#   - `dpkg -i` installs it and ringfence-agent.service reaches `active` (standalone mode: the
#     built-in pack, events in /var/log/ringfence/events.jsonl) with the units' hardening on;
#   - sensing works under that hardening: a program run from /tmp gives its exec event and the
#     built-in pack's "Execution From a Temporary Directory" finding;
#   - installing the package again (the upgrade path: prerm stops the agent, postinst starts
#     it) keeps an edited /etc/ringfence/agent.toml and leaves the agent active;
#   - the service comes back by itself after a reboot of the guest, and still senses;
#   - the opt-in console unit, under its own hardening, starts and serves;
#   - an agent version that crashes at start (a signed release installed with `ringfence
#     release install --activate`) is replaced by the package's binary by the supervisor
#     itself, and the service is active again.
# Prints `PASS`/`FAIL` with the figures (package size, install time, boot and job time).
#
# The guest image is built from Debian packages with mmdebstrap (systemd, the cloud kernel and
# its initramfs) once, and cached beside the kernel matrix's kernels (target/kernel-matrix); a
# change to the package list builds a new one. The guest runs on a copy-on-write snapshot of
# it, so every run starts from a clean install. It runs under TCG (DEB_BOOT_ACCEL=kvm
# uses KVM where it works).
#
# The package holds the debug build of `ringfence` (the one `cargo test` builds; `cargo deb
# --no-build --profile dev`, stripped): a release build costs many minutes of CPU for the same
# units, scripts and paths under test. RINGFENCE_DEB=path.deb tests another package instead.
#
#   scripts/deb-boot.sh
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=kernel-matrix.sh
source "$root/scripts/kernel-matrix.sh"
# Under TCG on a shared 2-core machine one agent start (eBPF load) takes about a minute.
timeout_secs="${DEB_BOOT_TIMEOUT:-1800}"
suite=bookworm
# Bump the last field to rebuild the image after a change to the customize hooks.
packages="systemd,systemd-sysv,linux-image-cloud-amd64,initramfs-tools,procps,ca-certificates"
image_key="$(echo "$suite $packages 1" | sha256sum | cut -c1-12)"
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
    (cd "$root" && cargo deb -q -p ringfence --no-build --profile dev -o "$out/" 2>/dev/null >&2)
    ls -1 "$out"/ringfence_*.deb | head -1
}

# The second disk: the package and the script the guest's rf-ci.service runs at each boot.
build_ci_disk() {
    local deb="$1" out="$2"
    local dir="$work/deb-ci"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$deb" "$dir/ringfence.deb"
    # A signed release of a version that crashes at start, and the root that trusts it.
    local rf="${CARGO_TARGET_DIR:-$root/target}/debug/ringfence"
    "$rf" content keys init --dir "$dir/keys" >/dev/null
    printf '#!/bin/sh\nkill -SEGV $$\n' > "$dir/crash.bin"
    "$rf" release build --binary "$dir/crash.bin" --version 9.9.9-crash --keys "$dir/keys" \
        -o "$dir/crash.release" >/dev/null
    cp "$dir/keys/root.json" "$dir/root.json"
    rm -rf "$dir/keys" "$dir/crash.bin"
    cat > "$dir/rf-ci.sh" <<'EOF'
#!/bin/sh
# Runs at every boot of the guest (rf-ci.service); the stage survives the reboot on /var.
stage=/var/lib/rf-ci/stage
mkdir -p /var/lib/rf-ci
say() { echo "RF-CI $*"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
fail() {
    say "FAIL $*"
    systemctl status ringfence-agent --no-pager -l 2>&1 | tail -20
    journalctl -b -u ringfence-agent --no-pager 2>&1 | tail -40
    systemctl poweroff
    exit 1
}
wait_active() {
    i=0
    while [ $i -lt 300 ]; do
        systemctl is-active --quiet ringfence-agent && return 0
        sleep 1; i=$((i + 1))
    done
    return 1
}
# An exec from /tmp: its event, and the built-in pack's finding (rule 32dfa2ca-...).
probe() {
    cp /bin/true "/tmp/rf-ci-probe-$1"
    "/tmp/rf-ci-probe-$1"
    i=0
    while [ $i -lt 120 ]; do
        if grep "rf-ci-probe-$1" /var/log/ringfence/events.jsonl 2>/dev/null \
            | grep -q 32dfa2ca-8d43-57be-919e-775948946ec2; then
            return 0
        fi
        sleep 1; i=$((i + 1))
    done
    return 1
}
report() {
    say "unit $(systemctl show ringfence-agent -p ActiveState -p SubState -p NRestarts -p MainPID --value | tr '\n' ' ')"
    say "mode $(journalctl -b -u ringfence-agent --no-pager -o cat 2>/dev/null | grep -o -m1 'mode="[a-z]*"' || echo unknown)"
}
if [ ! -e "$stage" ]; then
    say "boot 1: kernel $(uname -r), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
    start=$(ms)
    dpkg -i /ci/ringfence.deb || fail "dpkg -i"
    say "install-ms $(( $(ms) - start ))"
    wait_active || fail "ringfence-agent.service not active after install"
    report
    probe 1 || fail "no exec event and finding for /tmp/rf-ci-probe-1 (boot 1)"
    say "sensing ok after install"
    # A running agent refuses changes to its configuration (self-protection), root included.
    if echo "# edited by rf-ci" >> /etc/ringfence/agent.toml 2>/dev/null; then
        fail "the running agent let its agent.toml be changed"
    fi
    say "self-protection refused an edit of agent.toml"
    # The upgrade path: an edited conffile is kept, the agent is stopped and started again.
    systemctl stop ringfence-agent || fail "systemctl stop"
    echo "# edited by rf-ci" >> /etc/ringfence/agent.toml || fail "editing the stopped agent's agent.toml"
    start=$(ms)
    dpkg -i /ci/ringfence.deb || fail "dpkg -i (again)"
    say "reinstall-ms $(( $(ms) - start ))"
    grep -q "edited by rf-ci" /etc/ringfence/agent.toml || fail "the edited agent.toml was replaced"
    wait_active || fail "ringfence-agent.service not active after reinstall"
    probe 2 || fail "no exec event and finding for /tmp/rf-ci-probe-2 (after reinstall)"
    systemctl is-enabled --quiet ringfence-console && fail "the console was enabled"
    say "reinstall kept the config"
    echo 2 > "$stage"
    sync
    say "rebooting"
    systemctl reboot
else
    say "boot 2: after the reboot"
    wait_active || fail "ringfence-agent.service not active after the reboot"
    report
    probe 3 || fail "no exec event and finding for /tmp/rf-ci-probe-3 (after reboot)"
    say "sensing ok after reboot"
    # The opt-in console under its own hardening: it starts, makes its CA and listens.
    systemctl start ringfence-console || fail "ringfence-console did not start"
    i=0
    while [ $i -lt 120 ] && ! journalctl -b -u ringfence-console -o cat | grep -q "^CA pin:"; do
        sleep 1; i=$((i + 1))
    done
    if ! journalctl -b -u ringfence-console -o cat | grep -q "^CA pin:" \
        || ! systemctl is-active --quiet ringfence-console; then
        journalctl -b -u ringfence-console --no-pager | tail -20
        fail "ringfence-console is not serving under its hardening"
    fi
    say "console serving under its hardening ($(journalctl -b -u ringfence-console -o cat | grep -m1 '^console:'))"
    systemctl stop ringfence-console
    # A version that crashes at start: the supervisor falls back to the package's binary by
    # itself. Installed with the agent stopped (its self-protection guards the versions).
    systemctl stop ringfence-agent || fail "systemctl stop"
    ringfence release install /ci/crash.release --root /ci/root.json --activate \
        || fail "release install"
    start=$(ms)
    # Returns at READY=1: the first heartbeat, which only the fallen-back worker gives.
    systemctl start ringfence-agent || fail "ringfence-agent did not start after the crashing version"
    say "crash-to-ready-ms $(( $(ms) - start ))"
    journalctl -b -u ringfence-agent --no-pager -o short-precise 2>/dev/null \
        | grep -E "on trial|failed its trial|version=\"?package" | tail -4 | sed 's/^/RF-CI   | /'
    journalctl -b -u ringfence-agent --no-pager -o cat | grep -q "failed its trial" \
        || fail "no fall-back from the crashing version"
    [ -e /var/lib/ringfence/versions/current ] && fail "still on the crashing version"
    grep -q '"9.9.9-crash"' /var/lib/ringfence/versions/state.json || fail "the crashing version is not marked bad"
    probe 4 || fail "no exec event and finding after the fall-back"
    say "the crashing version fell back to the package's binary"
    say "PASS"
    systemctl poweroff
fi
EOF
    mke2fs -q -t ext4 -d "$dir" "$out" 64M
}

main_deb_boot() {
    local started=$SECONDS
    need_deb_packages
    local t=$SECONDS
    build_image
    local image_s=$((SECONDS - t))
    local deb
    deb="$(build_deb)"
    local ci_disk="$work/deb-ci.ext4"
    rm -f "$ci_disk"
    build_ci_disk "$deb" "$ci_disk"
    # TCG, like the kernel matrix: KVM under nested virtualisation (this CI) aborts on MSRs.
    local accel=(-accel tcg,thread=multi -cpu max,-cx16)
    if [[ "${DEB_BOOT_ACCEL:-tcg}" == kvm ]]; then
        accel=(-accel kvm -cpu host)
    fi
    local out="$work/deb-boot.log"
    t=$SECONDS
    # snapshot=on: the guest writes to a temporary overlay that lives as long as qemu (the
    # reboot keeps it); the cached image stays clean.
    timeout "$timeout_secs" qemu-system-x86_64 "${accel[@]}" -smp 2 -m 1024 \
        -nographic -nodefaults -serial stdio \
        -kernel "$images/$image_key.vmlinuz" -initrd "$images/$image_key.initrd" \
        -append "root=/dev/vda rw console=ttyS0 lsm=lockdown,capability,landlock,yama,apparmor,bpf panic=-1 quiet" \
        -drive "file=$images/$image_key.ext4,format=raw,if=virtio,snapshot=on" \
        -drive "file=$ci_disk,format=raw,if=virtio,readonly=on" \
        > "$out" 2>&1 || true
    local guest_s=$((SECONDS - t))
    grep -a -o 'RF-CI .*' "$out" | tr -d '\r' | sed 's/^/    /' || true
    local size
    size="$(stat -c %s "$deb")"
    local figures="package $((size / 1024)) KiB, image ${image_s} s, guest ${guest_s} s, job $((SECONDS - started)) s"
    if grep -a -q 'RF-CI PASS' "$out"; then
        echo "PASS deb-boot ($figures)"
        return 0
    fi
    echo "FAIL deb-boot ($figures; log: $out)"
    tail -40 "$out" | tr -d '\r' | sed 's/^/    | /'
    return 1
}

main_deb_boot "$@"
