#!/usr/bin/env bash
# Atomic Red Team T1518.001-4: Security Software Discovery - ps (Linux)
# atomic GUID 23b91cd2-c99c-4002-9e41-317c63e024a2; technique T1518.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ps aux | egrep 'falcond|nessusd|cbagentd|td-agent|packetbeat|filebeat|auditbeat|osqueryd'
}
cleanup() {
    :
}
"$1"
