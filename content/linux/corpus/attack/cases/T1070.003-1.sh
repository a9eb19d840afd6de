#!/usr/bin/env bash
# Atomic Red Team T1070.003-1: Clear Bash history (rm)
# atomic GUID a934276e-2be5-4a36-93fd-98adbb5bd4fc; technique T1070.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export HOME="$W"; touch ~/.bash_history
    rm ~/.bash_history
}
cleanup() {
    :
}
"$1"
