#!/usr/bin/env bash
# Atomic Red Team T1614.001-3: Discover System Language with locale
# atomic GUID 837d609b-845e-4519-90ce-edc3b4b0e138; technique T1614.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    locale
}
cleanup() {
    :
}
"$1"
