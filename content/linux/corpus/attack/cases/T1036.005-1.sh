#!/usr/bin/env bash
# Atomic Red Team T1036.005-1: Execute a process from a directory masquerading as the current parent directory
# atomic GUID 812c3ab8-94b0-4698-a9bf-9420af23ce24; technique T1036.005
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export HOME="$W"
    mkdir $HOME/...
    cp $(which sh) $HOME/...
    $HOME/.../sh -c "echo Hello from the Atomic Red Team test T1036.005"
}
cleanup() {
    :
}
"$1"
