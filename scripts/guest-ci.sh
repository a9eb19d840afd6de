#!/bin/sh
# The guest's half of the Debian guest drill (scripts/deb-boot.sh): runs at every boot of the
# guest (rf-ci.service, from the second disk at /ci); the stage survives the reboot on /var.
# Lines starting `RF-CI ` go to the serial console, where the host reads them: results, and
# the marks the host's half waits for before it acts on the console.
#
# /ci holds the package, the fleet's content root (root.json), the enrollment token (a file:
# never on a command line), drill.env (the console's URL and CA pin, the release versions,
# RF_RELEASES), and crash.release (a signed version that crashes at start, for the local
# fall-back when the console does not roll releases out).
. /ci/drill.env
stage=/var/lib/rf-ci/stage
versions=/var/lib/ringfence/versions
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
journal() { journalctl -b -u ringfence-agent --no-pager -o cat 2>/dev/null; }
# Wait up to $1 seconds (of the clock: a check may itself take seconds here) for the command
# that follows to succeed.
wait_for() {
    deadline=$(( $(date +%s) + $1 )); shift
    while [ "$(date +%s)" -lt "$deadline" ]; do
        "$@" && return 0
        sleep 1
    done
    "$@"
}
# The agent's warnings, errors and what it says about content, versions and the console, on
# the serial console as `RF-AGENT ...`, a repeated line once (the host prints them on a failure).
follow_agent() {
    journalctl -f -n 0 -u ringfence-agent -o cat 2>/dev/null \
        | grep --line-buffered -E 'WARN|ERROR|content|trial|worker started|enroll|release|fall' \
        | stdbuf -oL uniq -f 1 | sed -u 's/^/RF-AGENT /' &
}
# Health findings for a source that did not start: the unit's hardening broke sensing.
sources_started() {
    if grep -h '"ringfence-health-source"' /var/log/ringfence/events.jsonl 2>/dev/null \
        | grep -o '"message":"[^"]*"' | head -3 | sed 's/^/RF-CI   | /' | grep .; then
        return 1
    fi
}
agent_active() { systemctl is-active --quiet ringfence-agent; }
# An exec from a temporary directory: its event, and the pack's finding (rule 32dfa2ca-...).
# From /dev/shm (a tmpfs); tmp_write_check covers new files on the root filesystem.
probe_seen() {
    grep "rf-ci-probe-$1" /var/log/ringfence/events.jsonl 2>/dev/null \
        | grep -q 32dfa2ca-8d43-57be-919e-775948946ec2
}
# Up to 6 minutes: a worker that just started loads eBPF first (minutes on a busy emulator).
# The probe runs again every 30 s until seen: a worker switched to a new version is blind
# until its sensor is attached, and an exec before that is not recorded (the runs it took are
# reported).
probe() {
    cp /bin/true "/dev/shm/rf-ci-probe-$1" || { say "probe $1: cannot create /dev/shm/rf-ci-probe-$1"; return 1; }
    runs=0
    probe_deadline=$(( $(date +%s) + 360 ))  # not `deadline`: wait_for sets that one
    while [ "$(date +%s)" -lt "$probe_deadline" ]; do
        "/dev/shm/rf-ci-probe-$1"
        runs=$((runs + 1))
        if wait_for 30 probe_seen "$1"; then
            [ "$runs" = 1 ] || say "probe $1 seen on run $runs (the earlier runs fell before the sensor was attached)"
            return 0
        fi
    done
    return 1
}
# New files anywhere on the root filesystem stay writable: the BPF LSM guard knows the agent's
# files by inode number and generation, and ext4 gives a file's freed number to the next new
# file, which a guard keyed on the number alone refused (EPERM) until its next walk, as this
# drill saw after a version fall-back. Creates a few files in /tmp; fails naming those refused,
# with the guard's refusal event (the agent's old path).
tmp_write_check() {
    refused=""
    slug=$(echo "$1" | tr -c 'a-z0-9\n' '-')
    for i in 1 2 3 4 5 6 7 8; do
        # In a subshell: a redirection that fails on `:` (a special built-in) ends the shell.
        if ! (: > "/tmp/rf-ci-tmp-$slug-$i") 2>/dev/null; then
            refused="$refused $i"
        fi
    done
    rm -f /tmp/rf-ci-tmp-"$slug"-* 2>/dev/null
    [ -z "$refused" ] && return 0
    grep '"lsm/write-open"' /var/log/ringfence/events.jsonl 2>/dev/null | tail -1 | cut -c1-600 \
        | sed 's/^/RF-CI   | /'
    fail "new files in /tmp refused by the agent ($1: file(s)$refused of 8 refused)"
}
report() {
    say "unit $(systemctl show ringfence-agent -p ActiveState -p SubState -p NRestarts -p MainPID --value | tr '\n' ' ')"
    say "mode $(journal | grep -o -m1 'mode="[a-z]*"' || echo unknown)"
}
current_version() { readlink "$versions/current" 2>/dev/null || echo package; }
on_version() { [ "$(current_version)" = "$1" ]; }
# The newest "worker started" line names version $1.
worker_on() { journal | grep 'worker started' | tail -1 | grep -q "version=\"\?$1\"\?\( \|$\)"; }
content_confirmed() { journal | grep 'content confirmed' | grep -q "Some($1)"; }
# Epoch milliseconds of the first journal line holding $1 after the first holding $2 ($2 empty:
# from the start of the boot).
journal_ms() {
    journalctl -b -u ringfence-agent --no-pager -o short-unix 2>/dev/null | awk -v pat="$1" -v after="$2" '
        after != "" && !seen && index($0, after) { seen = 1; next }
        (after == "" || seen) && index($0, pat) { split($1, t, "."); printf "%d%03d\n", t[1], substr(t[2], 1, 3); exit }'
}

# Boot 1: install, join the fleet, take content (and releases) from the console, reboot.
boot_one() {
    say "boot 1: kernel $(uname -r), systemd $(systemctl --version | head -1 | cut -d' ' -f2)"
    start=$(ms)
    dpkg -i /ci/ringfence.deb || fail "dpkg -i"
    say "install-ms $(( $(ms) - start ))"
    wait_for 300 agent_active || fail "ringfence-agent.service not active after install"
    report
    probe 1 || fail "no exec event and finding for /dev/shm/rf-ci-probe-1 (boot 1)"
    sources_started || fail "a source did not start under the unit's hardening"
    say "sensing ok after install (standalone), every source started"
    # A running agent refuses changes to its configuration (self-protection), root included.
    if echo "# edited by rf-ci" >> /etc/ringfence/agent.toml 2>/dev/null; then
        fail "the running agent let its agent.toml be changed"
    fi
    say "self-protection refused an edit of agent.toml"
    # Join the console, the way agent.toml says: its content root, the content directory
    # (quick probation for the drill), then `agent enroll` with the token from a file.
    systemctl stop ringfence-agent || fail "systemctl stop"
    cp /ci/root.json /etc/ringfence/root.json
    sed -i -e 's|^# dir = "/var/lib/ringfence/content"|dir = "/var/lib/ringfence/content"|' \
        -e 's|^# root = "/etc/ringfence/root.json"|root = "/etc/ringfence/root.json"|' \
        -e 's|^# shadow_secs = 30|shadow_secs = 1|' -e 's|^# confirm_secs = 60|confirm_secs = 1|' \
        /etc/ringfence/agent.toml || fail "editing the stopped agent's agent.toml"
    echo "# edited by rf-ci" >> /etc/ringfence/agent.toml
    enrolled=0
    ringfence agent enroll --config /etc/ringfence/agent.toml --console "$RF_CONSOLE" \
        --ca-sha256 "$RF_CA_PIN" --token-file /ci/enroll.token > /tmp/rf-ci-enroll 2>&1 || enrolled=$?
    sed 's/^/RF-CI   | /' /tmp/rf-ci-enroll
    [ "$enrolled" = 0 ] || fail "ringfence agent enroll --console $RF_CONSOLE (exit $enrolled)"
    # The upgrade path: the edited conffile is kept, the agent is started again (enrolled).
    start=$(ms)
    dpkg -i /ci/ringfence.deb || fail "dpkg -i (again)"
    say "reinstall-ms $(( $(ms) - start ))"
    grep -q "edited by rf-ci" /etc/ringfence/agent.toml || fail "the edited agent.toml was replaced"
    wait_for 300 agent_active || fail "ringfence-agent.service not active after reinstall"
    systemctl is-enabled --quiet ringfence-console && fail "the console was enabled"
    say "reinstall kept the config; enrolled"
    # The host publishes content v1 as the baseline, then rolls v2 out.
    wait_for 600 content_confirmed 2 || fail "content v2 from the console's rollout never confirmed"
    probe 2 || fail "no exec event and finding for /dev/shm/rf-ci-probe-2 (content v2)"
    say "content v2 from the rollout active and sensing"
    tmp_write_check "content v2"
    if [ "$RF_RELEASES" = 1 ]; then
        releases
    fi
    echo 2 > "$stage"
    sync
    say "rebooting"
    systemctl reboot
}

# Agent releases from the console, each a rollout (`rollout start --agent-version`): a good one
# runs; a crashing one falls back to it by itself.
releases() {
    say "ready for releases"
    wait_for 600 on_version "$RF_GOOD" || fail "release $RF_GOOD never became current (on $(current_version))"
    wait_for 300 worker_on "$RF_GOOD" || fail "no worker started on release $RF_GOOD"
    wait_for 300 agent_active || fail "ringfence-agent.service not active on release $RF_GOOD"
    probe 3 || fail "no exec event and finding on release $RF_GOOD"
    say "release $RF_GOOD from the console running and sensing"
    # The crashing release must fall back to this one, not to the package's binary.
    wait_for 300 sh -c "journalctl -b -u ringfence-agent -o cat | grep -q 'version $RF_GOOD passed its trial'" \
        || fail "release $RF_GOOD never passed its trial"
    say "ready for the crashing release"
    trial="starting agent version $RF_CRASH on trial"
    wait_for 600 sh -c "journalctl -b -u ringfence-agent -o cat | grep -q '$trial'" \
        || fail "the crashing release $RF_CRASH never started"
    wait_for 300 sh -c "journalctl -b -u ringfence-agent -o cat | grep -q 'version $RF_CRASH failed its trial'" \
        || fail "no fall-back from the crashing release $RF_CRASH"
    wait_for 60 worker_on "$RF_GOOD" || fail "no worker started on $RF_GOOD after the fall-back"
    journalctl -b -u ringfence-agent --no-pager -o short-precise 2>/dev/null \
        | grep -E "on trial|failed its trial|worker started" | tail -6 | sed 's/^/RF-CI   | /'
    crashed=$(journal_ms "$trial" "")
    back=$(journal_ms "worker started" "version $RF_CRASH failed its trial")
    say "crash-to-previous-ms $((back - crashed))"
    on_version "$RF_GOOD" || fail "not back on $RF_GOOD after the fall-back (on $(current_version))"
    grep -q "\"$RF_CRASH\"" "$versions/state.json" || fail "the crashing release is not marked bad"
    wait_for 300 agent_active || fail "ringfence-agent.service not active after the fall-back"
    start=$(ms)
    probe 4 || fail "no exec event and finding after the fall-back"
    say "fell back to $RF_GOOD by itself; sensing again $(( $(ms) - start )) ms later"
    tmp_write_check "after the fall-back"
}

# Boot 2: the agent back by itself, still on what the console gave it; the console unit.
boot_two() {
    say "boot 2: after the reboot"
    wait_for 300 agent_active || fail "ringfence-agent.service not active after the reboot"
    report
    probe 5 || fail "no exec event and finding for /dev/shm/rf-ci-probe-5 (after reboot)"
    content_confirmed 2 || journal | grep -q 'content loaded.*version=2' \
        || say "note: no content v2 line in this boot's journal"
    if [ "$RF_RELEASES" = 1 ]; then
        on_version "$RF_GOOD" || fail "after the reboot on $(current_version), not $RF_GOOD"
        worker_on "$RF_GOOD" || fail "after the reboot the worker is not on $RF_GOOD"
    fi
    say "sensing ok after reboot (version $(current_version))"
    tmp_write_check "after the reboot"
    # The opt-in console under its own hardening: it starts, makes its CA and listens.
    systemctl start ringfence-console || fail "ringfence-console did not start"
    serving() { journalctl -b -u ringfence-console -o cat | grep -q "^CA pin:"; }
    if ! wait_for 120 serving || ! systemctl is-active --quiet ringfence-console; then
        journalctl -b -u ringfence-console --no-pager | tail -20
        fail "ringfence-console is not serving under its hardening"
    fi
    say "console serving under its hardening ($(journalctl -b -u ringfence-console -o cat | grep -m1 '^console:'))"
    systemctl stop ringfence-console
    if [ "$RF_RELEASES" != 1 ]; then
        local_crash
    fi
    say "PASS"
    systemctl poweroff
}

# Without the console's release rollouts: a crashing version installed on the host itself.
local_crash() {
    # Installed with the agent stopped (its self-protection guards the versions).
    systemctl stop ringfence-agent || fail "systemctl stop"
    ringfence release install /ci/crash.release --root /ci/root.json --activate \
        || fail "release install"
    start=$(ms)
    # Returns at READY=1: the first heartbeat, which only the fallen-back worker gives.
    systemctl start ringfence-agent || fail "ringfence-agent did not start after the crashing version"
    say "crash-to-ready-ms $(( $(ms) - start ))"
    journalctl -b -u ringfence-agent --no-pager -o short-precise 2>/dev/null \
        | grep -E "on trial|failed its trial|version=\"?package" | tail -4 | sed 's/^/RF-CI   | /'
    journal | grep -q "failed its trial" || fail "no fall-back from the crashing version"
    [ -e "$versions/current" ] && fail "still on the crashing version"
    grep -q "\"$RF_CRASH\"" "$versions/state.json" || fail "the crashing version is not marked bad"
    probe 6 || fail "no exec event and finding after the fall-back"
    say "the crashing version fell back to the package's binary"
}

follow_agent
if [ ! -e "$stage" ]; then
    boot_one
else
    boot_two
fi
