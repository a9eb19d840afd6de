#!/usr/bin/env bash
# Atomic Red Team T1082-25: Linux List Kernel Modules
# atomic GUID 034fe21c-3186-49dd-8d5d-128b35f181c7; technique T1082
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    lsmod >/dev/null
    kmod list >/dev/null
    grep vmw /proc/modules
}
cleanup() {
    :
}
"$1"
