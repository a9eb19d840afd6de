#!/usr/bin/env bash
# Atomic Red Team T1548.001-8: Provide the SetUID capability to a file
# atomic GUID 1ac3272f-9bcf-443a-9888-4b1d3de785c1; technique T1548.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    touch /tmp/evilBinary
    setcap cap_setuid=ep /tmp/evilBinary
}
cleanup() {
    rm -f /tmp/evilBinary
}
"$1"
