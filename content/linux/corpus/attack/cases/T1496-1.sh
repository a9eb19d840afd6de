#!/usr/bin/env bash
# Atomic Red Team T1496-1: FreeBSD/macOS/Linux - Simulate CPU Load with Yes
# atomic GUID 904a5a0e-fb02-490d-9f8d-0e256eb37549; technique T1496
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    timeout 2 yes > /dev/null
}
cleanup() {
    :
}
"$1"
