#!/usr/bin/env bash
# Atomic Red Team T1548.001-3: Set a SetUID flag on file
# atomic GUID 759055b3-3885-4582-a8ec-c00c9d64dd79; technique T1548.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    touch /tmp/evilBinary
    chown root /tmp/evilBinary
    chmod u+xs /tmp/evilBinary
}
cleanup() {
    rm -f /tmp/evilBinary
}
"$1"
