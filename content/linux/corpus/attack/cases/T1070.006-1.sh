#!/usr/bin/env bash
# Atomic Red Team T1070.006-1: Set a file's access timestamp
# atomic GUID 5f9113d5-ed75-47ed-ba23-ea3573d05810; technique T1070.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    touch "$W/T1070.006-access.txt"
    touch -a -t 197001010000.00 "$W/T1070.006-access.txt"
}
cleanup() {
    :
}
"$1"
