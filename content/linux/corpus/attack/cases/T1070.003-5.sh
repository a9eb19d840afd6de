#!/usr/bin/env bash
# Atomic Red Team T1070.003-5: Clear Bash history (truncate)
# atomic GUID 47966a1d-df4f-4078-af65-db6d9aa20739; technique T1070.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export HOME="$W"; echo ls > ~/.bash_history
    truncate -s0 ~/.bash_history
}
cleanup() {
    :
}
"$1"
