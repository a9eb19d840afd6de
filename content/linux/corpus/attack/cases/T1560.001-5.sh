#!/usr/bin/env bash
# Atomic Red Team T1560.001-5: Data Compressed - nix - zip
# atomic GUID c51cec55-28dd-4ad2-9461-1eacbc82c3a0; technique T1560.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    zip $W/data.zip /var/log/{w,b}tmp >/dev/null 2>&1
}
cleanup() {
    :
}
"$1"
