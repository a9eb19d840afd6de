#!/usr/bin/env bash
# Atomic Red Team T1059.004-1: Create and Execute Bash Shell Script
# atomic GUID 7e7ac3ed-f795-4fa5-b711-09d6fbe9b873; technique T1059.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    sh -c "echo 'echo Hello from the Atomic Red Team' > $W/art.sh"
    sh -c "echo 'ping -c 1 127.0.0.1' >> $W/art.sh"
    chmod +x $W/art.sh
    sh $W/art.sh
}
cleanup() {
    :
}
"$1"
