#!/usr/bin/env bash
# Atomic Red Team T1070.003-4: Clear Bash history (ln dev/null)
# atomic GUID 23d348f3-cc5c-4ba9-bd0a-ae09069f0914; technique T1070.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export HOME="$W"; echo ls > ~/.bash_history
    ln -sf /dev/null ~/.bash_history
}
cleanup() {
    :
}
"$1"
