#!/usr/bin/env bash
# Atomic Red Team T1046-1: Port Scan
# atomic GUID 68e907da-2539-48f6-9fc9-257a78c05540; technique T1046
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    for port in $(seq 1 20); do (2>/dev/null echo >/dev/tcp/127.0.0.1/$port) && echo port $port is open ; done
}
cleanup() {
    :
}
"$1"
