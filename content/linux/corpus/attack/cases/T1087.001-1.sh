#!/usr/bin/env bash
# Atomic Red Team T1087.001-1: Enumerate all accounts (Local)
# atomic GUID f8aab3dd-5990-4bf8-b8ab-2226c951696f; technique T1087.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cat /etc/passwd > $W/T1087.001.txt
    cat $W/T1087.001.txt >/dev/null
}
cleanup() {
    :
}
"$1"
