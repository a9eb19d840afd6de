#!/usr/bin/env bash
# Atomic Red Team T1222.002-9: chattr - Remove immutable file attribute
# atomic GUID e7469fe2-ad41-4382-8965-99b94dd3c13f; technique T1222.002
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    chattr -i /var/spool/cron/root 2>/dev/null
}
cleanup() {
    :
}
"$1"
