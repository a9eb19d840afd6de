#!/usr/bin/env bash
# Atomic Red Team T1546.004-2: Add command to .bashrc
# atomic GUID 0a898315-4cfa-4007-bafe-33a4646d115f; technique T1546.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cp /root/.bashrc "$W/bashrc.bak"
    echo 'echo "Hello from Atomic Red Team T1546.004" > /tmp/T1546.004' >> ~/.bashrc
}
cleanup() {
    cp "$W/bashrc.bak" /root/.bashrc
}
"$1"
