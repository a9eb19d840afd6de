#!/usr/bin/env bash
# Atomic Red Team T1685-8: Stop Crowdstrike Falcon on Linux
# atomic GUID 828a1278-81cc-4802-96ab-188bf29ca77d; technique T1685
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    systemctl stop falcon-sensor.service 2>/dev/null
    systemctl disable falcon-sensor.service 2>/dev/null
}
cleanup() {
    :
}
"$1"
