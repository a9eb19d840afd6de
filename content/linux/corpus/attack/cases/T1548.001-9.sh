#!/usr/bin/env bash
# Atomic Red Team T1548.001-9: Do reconnaissance for files that have the setuid bit set
# atomic GUID 8e36da01-cd29-45fd-be72-8a0fcaad4481; technique T1548.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    find /usr/bin -perm -4000 >/dev/null
}
cleanup() {
    :
}
"$1"
