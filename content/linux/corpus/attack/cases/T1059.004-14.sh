#!/usr/bin/env bash
# Atomic Red Team T1059.004-14: Shell Creation using awk command
# atomic GUID ee72b37d-b8f5-46a5-a9e7-0ff50035ffd5; technique T1059.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    awk 'BEGIN {system("/bin/sh -c exit &")}'
}
cleanup() {
    :
}
"$1"
