#!/usr/bin/env bash
# Atomic Red Team T1489-4: Linux - Stop service using systemctl
# atomic GUID 42e3a5bd-1e45-427f-aa08-2a65fa29a820; technique T1489
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    systemctl stop cron 2>/dev/null
}
cleanup() {
    :
}
"$1"
