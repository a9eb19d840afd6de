#!/usr/bin/env bash
# Atomic Red Team T1685-3: Disable journal logging via sed utility
# atomic GUID 12e5551c-8d5c-408e-b3e4-63f53b03379f; technique T1685
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cp /etc/systemd/journald.conf "$W/journald.conf.bak"
    sed -i 's/Storage=auto/Storage=none/' /etc/systemd/journald.conf
}
cleanup() {
    cp "$W/journald.conf.bak" /etc/systemd/journald.conf
}
"$1"
