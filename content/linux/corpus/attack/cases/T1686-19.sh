#!/usr/bin/env bash
# Atomic Red Team T1686-19: Modify/delete iptables firewall rules
# atomic GUID 899a7fb5-d197-4951-8614-f19ac4a73ad4; technique T1686
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    unshare -n iptables -D OUTPUT -p tcp --dport 21 -j DROP 2>/dev/null
}
cleanup() {
    :
}
"$1"
