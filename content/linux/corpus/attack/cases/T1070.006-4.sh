#!/usr/bin/env bash
# Atomic Red Team T1070.006-4: Modify file timestamps using reference file
# atomic GUID 631ea661-d661-44b0-abdb-7a7f3fc08e50; technique T1070.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    touch "$W/T1070.006-reference.txt"
    touch -acmr /bin/sh "$W/T1070.006-reference.txt"
}
cleanup() {
    :
}
"$1"
