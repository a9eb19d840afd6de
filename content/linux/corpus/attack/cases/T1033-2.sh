#!/usr/bin/env bash
# Atomic Red Team T1033-2: System Owner/User Discovery
# atomic GUID 2a9b677d-a230-44f4-ad86-782df1ef108c; technique T1033
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    users
    w
    who
}
cleanup() {
    :
}
"$1"
