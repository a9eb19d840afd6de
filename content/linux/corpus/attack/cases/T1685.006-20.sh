#!/usr/bin/env bash
# Atomic Red Team T1685.006-20: Overwrite Linux Log
# atomic GUID d304b2dc-90b4-4465-a650-16ddd503f7b5; technique T1685.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo 0> /var/log/secure
}
cleanup() {
    rm -f /var/log/secure
}
"$1"
