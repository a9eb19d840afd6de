#!/usr/bin/env bash
# Atomic Red Team T1552.001-1: Find AWS credentials
# atomic GUID 37807632-d3da-442e-8c2e-00f44928ff8f; technique T1552.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    find //.aws -name "credentials" -type f 2>/dev/null
}
cleanup() {
    :
}
"$1"
