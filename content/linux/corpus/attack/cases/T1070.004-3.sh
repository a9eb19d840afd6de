#!/usr/bin/env bash
# Atomic Red Team T1070.004-3: Overwrite and delete a file with shred
# atomic GUID 039b4b10-2900-404b-b67f-4b6d49aa6499; technique T1070.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo secret > "$W/victim-shred.txt"
    shred -u "$W/victim-shred.txt"
}
cleanup() {
    :
}
"$1"
