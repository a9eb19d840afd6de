#!/usr/bin/env bash
# Atomic Red Team T1070.003-3: Clear Bash history (cat dev/null)
# atomic GUID b1251c35-dcd3-4ea1-86da-36d27b54f31f; technique T1070.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export HOME="$W"; echo ls > ~/.bash_history
    cat /dev/null > ~/.bash_history
}
cleanup() {
    :
}
"$1"
