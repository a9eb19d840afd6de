#!/usr/bin/env bash
# Atomic Red Team T1546.004-4: Append to the system shell profile
# atomic GUID 694b3cc8-6a78-4d35-9e74-0123d009e94b; technique T1546.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cp /etc/profile "$W/profile.bak"
    echo '# Hello from Atomic Red Team T1546.004' >> /etc/profile
}
cleanup() {
    cp "$W/profile.bak" /etc/profile
}
"$1"
