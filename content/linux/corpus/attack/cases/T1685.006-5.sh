#!/usr/bin/env bash
# Atomic Red Team T1685.006-5: Truncate system log files via truncate utility (freebsd)
# atomic GUID 14033063-ee04-4eaf-8f5d-ba07ca7a097c; technique T1685.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    truncate -s 0 /var/log/messages
    truncate --size=0 /var/log/security
}
cleanup() {
    rm -f /var/log/messages /var/log/security
}
"$1"
