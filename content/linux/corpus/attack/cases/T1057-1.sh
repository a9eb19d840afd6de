#!/usr/bin/env bash
# Atomic Red Team T1057-1: Process Discovery - ps
# atomic GUID 4ff64f0b-aaf2-4866-b39d-38d9791407cc; technique T1057
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ps >> $W/loot.txt
    ps aux >> $W/loot.txt
}
cleanup() {
    :
}
"$1"
