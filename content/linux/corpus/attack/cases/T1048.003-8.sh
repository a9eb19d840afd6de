#!/usr/bin/env bash
# Atomic Red Team T1048.003-8: Python3 http.server
# atomic GUID 3ea1f938-f80a-4305-9aa8-431bc4867313; technique T1048.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cd /tmp; python3 -m http.server 9090 >/dev/null 2>&1 & PID=$!; sleep 2; kill $PID; unset PID
}
cleanup() {
    :
}
"$1"
