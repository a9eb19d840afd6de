#!/usr/bin/env bash
# Atomic Red Team T1610-1: Deploy Docker container
# atomic GUID 59aa6f26-7620-417e-9318-589e0fb7a372; technique T1610
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    docker run --name t1610_container --rm -itd alpine bash -c "while true; do sleep 5; done" 2>/dev/null
}
cleanup() {
    :
}
"$1"
