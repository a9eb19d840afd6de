#!/usr/bin/env bash
# Atomic Red Team T1059.004-11: Environment variable scripts
# atomic GUID bdaebd56-368b-4970-a523-f905ff4a8a51; technique T1059.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export ART='echo "Atomic Red Team was here... T1059.004"'
    echo $ART |/bin/sh
}
cleanup() {
    :
}
"$1"
