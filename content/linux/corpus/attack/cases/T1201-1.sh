#!/usr/bin/env bash
# Atomic Red Team T1201-1: Examine password complexity policy - Ubuntu
# atomic GUID 085fe567-ac84-47c7-ac4c-2688ce28265b; technique T1201
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cat /etc/pam.d/common-password
}
cleanup() {
    :
}
"$1"
