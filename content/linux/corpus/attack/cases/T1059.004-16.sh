#!/usr/bin/env bash
# Atomic Red Team T1059.004-16: Shell Creation using busybox command
# atomic GUID ab4d04af-68dc-4fee-9c16-6545265b3276; technique T1059.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    busybox sh -c exit
}
cleanup() {
    :
}
"$1"
