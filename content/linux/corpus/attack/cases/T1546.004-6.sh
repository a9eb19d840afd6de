#!/usr/bin/env bash
# Atomic Red Team T1546.004-6: System shell profile scripts
# atomic GUID 8fe2ccfd-f079-4c03-b1a9-bd9b362b67d4; technique T1546.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo '# Atomic Red Team was here... T1546.004' >> /etc/profile.d/bash_completion.sh
}
cleanup() {
    rm -f /etc/profile.d/bash_completion.sh
}
"$1"
