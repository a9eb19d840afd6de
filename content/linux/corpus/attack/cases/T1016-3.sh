#!/usr/bin/env bash
# Atomic Red Team T1016-3: System Network Configuration Discovery
# atomic GUID c141bbdb-7fca-4254-9fd6-f47e79447e17; technique T1016
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ip addr >/dev/null; ip route >/dev/null
    ss -ant >/dev/null
    arp -a 2>/dev/null; cat /etc/resolv.conf >/dev/null
}
cleanup() {
    :
}
"$1"
