#!/usr/bin/env bash
# Atomic Red Team T1053.003-3: Cron - Add script to /etc/cron.d folder
# atomic GUID 078e69eb-d9fb-450e-b9d0-2e118217c846; technique T1053.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "echo '*/5     *       *       *       *       root    echo \"Hello from Atomic Red Team\"' > /tmp/atomic.log" > /etc/cron.d/persistevil
}
cleanup() {
    rm -f /etc/cron.d/persistevil
}
"$1"
