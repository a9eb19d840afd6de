#!/usr/bin/env bash
# Atomic Red Team T1003.008-1: Access /etc/shadow (Local)
# atomic GUID 3723ab77-c546-403c-8fb4-bb577033b235; technique T1003.008
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cat /etc/shadow > "$W/T1003.008.txt"
    cat "$W/T1003.008.txt" >/dev/null
}
cleanup() {
    :
}
"$1"
