#!/usr/bin/env bash
# Atomic Red Team T1564.001-1: Create a hidden file in a hidden directory
# atomic GUID 61a782e5-9a19-40b5-8ba4-69a4b9f3d7be; technique T1564.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    mkdir /var/tmp/.hidden-directory
    echo "T1564.001" > /var/tmp/.hidden-directory/.hidden-file
}
cleanup() {
    rm -rf /var/tmp/.hidden-directory
}
"$1"
