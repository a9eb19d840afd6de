#!/usr/bin/env bash
# Atomic Red Team T1685.006-6: Delete log files via cat utility by appending /dev/null or /dev/zero
# atomic GUID c23bdb88-928d-493e-b46d-df2906a50941; technique T1685.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cat /dev/null > /var/log/messages
    head -c 64 /dev/zero > /var/log/messages
}
cleanup() {
    rm -f /var/log/messages
}
"$1"
