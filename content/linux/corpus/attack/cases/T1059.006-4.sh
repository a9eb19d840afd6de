#!/usr/bin/env bash
# Atomic Red Team T1059.006-4: Python pty module and spawn function used to spawn sh or bash
# atomic GUID 161d694c-b543-4434-85c3-c3a433e33792; technique T1059.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    python3 -c "import pty;pty.spawn('/bin/sh')" </dev/null >/dev/null 2>&1
}
cleanup() {
    :
}
"$1"
