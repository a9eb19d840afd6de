#!/usr/bin/env bash
# Atomic Red Team T1560.001-6: Data Compressed - nix - gzip Single File
# atomic GUID cde3c2af-3485-49eb-9c1f-0ed60e9cc0af; technique T1560.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo 'confidential! SSN: 078-05-1120 - CCN: 4000 1234 5678 9101' > $W/victim-gzip.txt
    gzip -k $W/victim-gzip.txt
}
cleanup() {
    :
}
"$1"
