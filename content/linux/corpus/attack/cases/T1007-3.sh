#!/usr/bin/env bash
# Atomic Red Team T1007-3: System Service Discovery - systemctl/service
# atomic GUID f4b26bce-4c2c-46c0-bcc5-fce062d38bef; technique T1007
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    systemctl --type=service >/dev/null
}
cleanup() {
    :
}
"$1"
