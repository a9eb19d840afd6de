#!/usr/bin/env bash
# The Debian guest drill: the .deb installed on a Debian 12 guest that boots with systemd under
# qemu, the way an operator installs it, joined to a fleet console running on this host.
# Checks that
#   - `dpkg -i` installs it and ringfence-agent.service reaches `active` (standalone mode: the
#     built-in pack, events in /var/log/ringfence/events.jsonl) with the units' hardening on;
#   - sensing works under that hardening: a program run from /dev/shm gives its exec event and
#     the pack's "Execution From a Temporary Directory" finding (again after every step below);
#   - the agent enrolls to the console on the host (HTTPS to 10.0.2.2 over qemu's user network,
#     the console's CA pinned, the enrollment token from a file), and installing the package
#     again (the upgrade path: prerm stops the agent, postinst starts it) keeps the edited
#     /etc/ringfence/agent.toml and starts the agent enrolled;
#   - content reaches it from the console: a baseline, then a rollout's version (both signed to
#     drop rules, so a second operator approves them);
#   - the service comes back by itself after a reboot of the guest, still enrolled (it checks
#     in again) and on what the console gave it, and still senses;
#   - the opt-in console unit, under its own hardening, starts and serves in the guest;
#   - agent releases come from the console, each rolled out by `rollout start
#     --agent-version`: a good one (the package's binary signed as a higher version) runs and
#     senses; then one that crashes at start falls back by itself to the good one, and the
#     console halts that rollout; new files on the root filesystem stay writable throughout
#     (the guard's inode generations);
#   - with DEB_BOOT_RELEASES=0 instead, a crashing version installed on the guest itself
#     (`ringfence release install --activate`) is replaced by the package's binary by itself.
# Prints `PASS`/`FAIL` with the figures (package size, install time, time from the crashing
# version started to the previous one running, time to halt, boot and job time).
#
# The guest image (scripts/guest-lib.sh) is cached beside the kernel matrix's kernels; the guest
# runs on a copy-on-write snapshot of it, so every run starts from a clean install. One guest at
# a time, under TCG (DEB_BOOT_ACCEL=kvm uses KVM where it works). The guest's half of the drill
# is scripts/guest-ci.sh.
#
# The package holds the debug build of `ringfence` (the one `cargo test` builds; `cargo deb
# --no-build --profile dev --fast`, stripped): a release build costs many minutes of CPU for
# the same units, scripts and paths under test. RINGFENCE_DEB=path.deb tests another package.
#
#   scripts/deb-boot.sh
#   DEB_BOOT_RELEASES=0 scripts/deb-boot.sh     # the local crashing version instead of releases
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=guest-lib.sh
source "$root/scripts/guest-lib.sh"
# Under TCG on a shared 2-core machine one agent start (eBPF load) takes about a minute.
timeout_secs="${DEB_BOOT_TIMEOUT:-1800}"
releases="${DEB_BOOT_RELEASES:-1}"
fleet="$work/deb-fleet"
guest_log="$work/deb-boot.log"
host_log="$work/deb-host.log"

# The fleet's artefacts, signed by the console's content keys: content v1 and v2, a good
# release (the package's own binary as the next patch version) and one that crashes at start
# (the version after it), and the one-ring plan every rollout here uses. The content is one
# rule of the default pack (execution from /tmp, which the guest's probes trigger) with its
# tests, signed as an intended drop of the built-in pack's other rules: an emulated guest
# takes minutes to verify and compile the whole pack, and the drill is about delivery.
build_fleet_artefacts() {
    local deb="$1" version major minor patch
    version="$(dpkg-deb -f "$deb" Version)"
    IFS=. read -r major minor patch <<< "${version%%-*}"
    good_version="$major.$minor.$((patch + 1))"
    crash_version="$major.$minor.$((patch + 2))"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/ringfence > "$fleet/good.bin"
    rf release build --binary "$fleet/good.bin" --version "$good_version" --keys "$fleet/keys" \
        -o "$fleet/good.release" >/dev/null
    printf '#!/bin/sh\nkill -SEGV $$\n' > "$fleet/crash.bin"
    rf release build --binary "$fleet/crash.bin" --version "$crash_version" --keys "$fleet/keys" \
        -o "$fleet/crash.release" >/dev/null
    rm -f "$fleet/good.bin" "$fleet/crash.bin"
    local pack="$fleet/pack" rule=process_creation/exec_from_temp_dir.yml v
    mkdir -p "$pack/rules/process_creation" "$pack/tests/process_creation"
    cp "$root/content/linux/rules/$rule" "$pack/rules/$rule"
    cp "$root/content/linux/tests/$rule" "$pack/tests/$rule"
    for v in 1 2; do
        rf content build "$pack" --version "$v" --keys "$fleet/keys" -o "$fleet/v$v.bundle" \
            --allow-rule-drop "the guest drill's one-rule pack" >/dev/null
    done
    # Under TCG a worker takes a minute or two to start (eBPF load, content compile) and does
    # not check in meanwhile: 60 check-ins (5 minutes) before a quiet agent counts as missing.
    printf '[gates]\nmin_samples = 1\nheartbeat_intervals = 60\n\n[[rings]]\nname = "all"\npercent = 100\nbake = "10s"\n' \
        > "$fleet/plan.toml"
}

# The second disk: the package, the guest's script, the fleet's root, an enrollment token and
# drill.env (what the guest's script needs to know).
build_ci_disk() {
    local deb="$1" out="$2"
    local dir="$work/deb-ci"
    rm -rf "$dir" "$out"
    mkdir -p "$dir"
    cp "$deb" "$dir/ringfence.deb"
    cp "$root/scripts/guest-ci.sh" "$dir/rf-ci.sh"
    cp "$fleet/keys/root.json" "$dir/root.json"
    cp "$fleet/crash.release" "$dir/crash.release"
    (umask 077 && rf fleet enroll-token create --uses 1 --ttl 2h --label deb-boot \
        | awk '/^token:/ {print $2}' > "$dir/enroll.token")
    [[ -s "$dir/enroll.token" ]] || { log "no enrollment token from the console"; return 1; }
    cat > "$dir/drill.env" <<EOF
RF_CONSOLE=https://10.0.2.2:$console_port
RF_CA_PIN=$RINGFENCE_CA_SHA256
RF_RELEASES=$releases
RF_GOOD=$good_version
RF_CRASH=$crash_version
EOF
    mke2fs -q -t ext4 -d "$dir" "$out" 64M
    rm -rf "$dir"
}

say() { echo "HOST $*"; }

# The host's half: acts on the console when the guest is ready, and checks what the console
# sees. Its lines go to $host_log.
drive_console() {
    wait_guest "reinstall kept the config; enrolled" 1200 || return 1
    wait_while_guest_runs 120 agent_is content 0 || { say "FAIL the enrolled agent never checked in"; return 1; }
    say "agent $(agent_field id) enrolled and checking in"
    local t=$SECONDS
    local out
    out="$(rf rollout publish --version 1 --baseline --bundle "$fleet/v1.bundle")" \
        || { say "FAIL rollout publish --baseline"; return 1; }
    approve_held "the baseline v1" "$out" || return 1
    wait_while_guest_runs 600 agent_is content 1 || { say "FAIL the agent never reported content v1"; return 1; }
    out="$(rf rollout start --version 2 --bundle "$fleet/v2.bundle" --plan "$fleet/plan.toml")" \
        || { say "FAIL rollout start --version 2"; return 1; }
    approve_held "the rollout of v2" "$out" || return 1
    wait_while_guest_runs 600 agent_is content 2 || { say "FAIL the agent never reported content v2"; return 1; }
    say "content: baseline v1, then rollout v2, reported by the agent in $((SECONDS - t)) s"
    if [[ "$releases" == 1 ]]; then
        drive_releases || return 1
    fi
    wait_guest "boot 2" 900 || return 1
    local rebooted
    rebooted="$(now_ms)"
    wait_while_guest_runs 300 agent_seen_after "$rebooted" \
        || { say "FAIL the agent did not check in after the reboot"; return 1; }
    agent_is content 2 || { say "FAIL after the reboot on content v$(agent_field content)"; return 1; }
    if [[ "$releases" == 1 ]] && ! agent_is version "$good_version"; then
        say "FAIL after the reboot the console sees version $(agent_field version)"
        return 1
    fi
    say "after the reboot: still enrolled, checking in (version $(agent_field version), content v2)"
}

# Content signed to drop rules (the drill's one-rule pack) waits for a second operator, as a
# baseline and as a rollout: when the CLI's output $2 names an approval, one approves it.
approve_held() {
    local what="$1" approval
    approval="$(awk '/^approval [0-9]+ / {print $2; exit}' <<< "$2")"
    [[ -n "$approval" ]] || return 0
    # Retried: a console on SQLite under load can answer 500 ("database is locked") once.
    wait_until 10 env RINGFENCE_TOKEN="$second_token" "$rf_bin" console approve "$approval" >/dev/null \
        || { say "FAIL a second operator's approval of $what (approval $approval)"; return 1; }
    say "$what (a rule drop) approved by a second operator (approval $approval)"
}

second_operator() {
    second_token="$(rf console operators add drill-second --role admin 2>/dev/null | awk '/^api token:/ {print $3}')"
    [[ -n "$second_token" ]]
}

rollout_halted() { rf rollout status --kind agent --json 2>/dev/null | grep -q '"state": *"halted"'; }

drive_releases() {
    wait_guest "ready for releases" 600 || return 1
    local t=$SECONDS
    rf rollout start --agent-version "$good_version" --release "$fleet/good.release" \
        --plan "$fleet/plan.toml" >/dev/null || { say "FAIL rollout start --agent-version $good_version"; return 1; }
    wait_while_guest_runs 900 agent_is version "$good_version" \
        || { say "FAIL the console never saw version $good_version"; return 1; }
    say "release $good_version rolled out, reported by the agent in $((SECONDS - t)) s"
    wait_guest "ready for the crashing release" 600 || return 1
    # A rollout to one agent never passes its gate: there is no control group to judge it
    # against ("too few samples"), so it stays active and keeps the next one from starting.
    # With no baseline release, a rollback stops it and the agent keeps what it runs (the
    # console offers it no release, and the good release is its current version).
    rf rollout status --kind agent 2>&1 | grep -m1 '^  gate' | sed 's/^/HOST   | /' || true
    rf rollout rollback --kind agent --reason "drill: one agent, no control group; keep $good_version" >/dev/null \
        || { say "FAIL rollout rollback of the one-agent rollout of $good_version"; return 1; }
    agent_is version "$good_version" || { say "FAIL version $(agent_field version) after ending the rollout"; return 1; }
    say "the one-agent rollout of $good_version stopped (no control group to pass its gate); the agent keeps it"
    local started
    started="$(now_ms)"
    rf rollout start --agent-version "$crash_version" --release "$fleet/crash.release" \
        --plan "$fleet/plan.toml" >/dev/null || { say "FAIL rollout start --agent-version $crash_version"; return 1; }
    wait_while_guest_runs 900 rollout_halted || { say "FAIL the crashing release's rollout never halted"; return 1; }
    say "time-to-halt-ms $(($(now_ms) - started)) (rollout start to halted)"
    rf rollout status --kind agent 2>&1 | sed 's/^/HOST   | /'
}

main_deb_boot() {
    local started=$SECONDS
    need_deb_packages
    local t=$SECONDS
    build_image
    local image_s=$((SECONDS - t))
    local deb
    deb="$(build_deb)"
    trap 'stop_guest; stop_console' EXIT
    start_console "$fleet"
    # The second operator who approves what the first holds (retried, see approve_held).
    second_token=""
    wait_until 10 second_operator || { log "no second operator on the console"; return 1; }
    build_fleet_artefacts "$deb"
    local ci_disk="$work/deb-ci.ext4"
    build_ci_disk "$deb" "$ci_disk"
    t=$SECONDS
    boot_guest "$ci_disk" "$guest_log"
    local drive_status=0
    drive_console > "$host_log" 2>&1 || drive_status=1
    if ((drive_status)); then
        # A guest that failed prints its agent's journal and powers off: give it a minute.
        wait_until 60 sh -c "! kill -0 $qemu_pid 2>/dev/null" || true
        stop_guest
    else
        wait "$qemu_pid" || true
        qemu_pid=
    fi
    local guest_s=$((SECONDS - t))
    stop_console
    grep -a -o 'RF-CI .*' "$guest_log" | tr -d '\r' | sed 's/^/    /' || true
    if ((drive_status)) || ! grep -a -q 'RF-CI PASS' "$guest_log"; then
        grep -a -o 'RF-AGENT .*' "$guest_log" | tr -d '\r' | tail -40 | sed 's/^/    /' || true
    fi
    sed 's/^/    /' "$host_log"
    local size
    size="$(stat -c %s "$deb")"
    local figures="package $((size / 1024)) KiB, image ${image_s} s, guest ${guest_s} s, job $((SECONDS - started)) s"
    # At the reboot, systemd-shutdown kills what is left; a process it cannot kill keeps the
    # root filesystem from being remounted read-only, and the host reboots uncleanly. The agent's
    # guard once refused those kills.
    local unkillable
    unkillable="$(grep -a -o 'systemd-shutdown\[1\]: Could not kill [0-9]*: .*' "$guest_log" | tr -d '\r' | sort -u || true)"
    if [[ -n "$unkillable" ]]; then
        echo "    at the reboot: $unkillable"
        drive_status=1
    fi
    if ((drive_status == 0)) && grep -a -q 'RF-CI PASS' "$guest_log"; then
        echo "PASS deb-boot ($figures)"
        return 0
    fi
    echo "FAIL deb-boot ($figures; logs: $guest_log, $host_log, $fleet/console.log)"
    first_kernel_report "$guest_log"
    tail -40 "$guest_log" | tr -d '\r' | sed 's/^/    | /'
    return 1
}

main_deb_boot "$@"
