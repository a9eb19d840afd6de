#!/usr/bin/env bash
# Atomic Red Team T1686-18: Disable iptables
# atomic GUID 7784c64e-ed0b-4b65-bf63-c86db229fd56; technique T1686
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    unshare -n sh -c 'iptables-save > "$0/iptables.rules"; iptables -F' "$W"
}
cleanup() {
    :
}
"$1"
