#!/usr/bin/env bash
# Atomic Red Team T1053.003-2: Cron - Add script to all cron subfolders
# atomic GUID b7d42afa-9086-4c8a-b7b0-8ea3faa6ebb0; technique T1053.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "echo 'Hello from Atomic Red Team' > /tmp/atomic.log" > /etc/cron.daily/persistevil
    echo "echo 'Hello from Atomic Red Team' > /tmp/atomic.log" > /etc/cron.hourly/persistevil 2>/dev/null
    echo "echo 'Hello from Atomic Red Team' > /tmp/atomic.log" > /etc/cron.monthly/persistevil 2>/dev/null
    echo "echo 'Hello from Atomic Red Team' > /tmp/atomic.log" > /etc/cron.weekly/persistevil 2>/dev/null
}
cleanup() {
    rm -f /etc/cron.daily/persistevil /etc/cron.hourly/persistevil /etc/cron.monthly/persistevil /etc/cron.weekly/persistevil
}
"$1"
