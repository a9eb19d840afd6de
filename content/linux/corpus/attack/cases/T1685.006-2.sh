#!/usr/bin/env bash
# Atomic Red Team T1685.006-2: rm -rf
# atomic GUID bd8ccc45-d632-481e-b7cf-c467627d68f9; technique T1685.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    rm -rf /var/log/messages
    rm -rf /var/log/security
}
cleanup() {
    :
}
"$1"
