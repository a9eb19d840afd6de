#!/usr/bin/env bash
# Atomic Red Team T1087.001-3: View accounts with UID 0
# atomic GUID c955a599-3653-4fe5-b631-f11c00eb0397; technique T1087.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    grep 'x:0:' /etc/passwd > $W/T1087.001.txt
    grep '*:0:' /etc/passwd >> $W/T1087.001.txt
    cat $W/T1087.001.txt 2>/dev/null >/dev/null
}
cleanup() {
    :
}
"$1"
