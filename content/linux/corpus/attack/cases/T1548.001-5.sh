#!/usr/bin/env bash
# Atomic Red Team T1548.001-5: Set a SetGID flag on file
# atomic GUID db55f666-7cba-46c6-9fe6-205a05c3242c; technique T1548.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    touch /tmp/evilBinary
    chown root /tmp/evilBinary
    chmod g+xs /tmp/evilBinary
}
cleanup() {
    rm -f /tmp/evilBinary
}
"$1"
