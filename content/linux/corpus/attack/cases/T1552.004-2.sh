#!/usr/bin/env bash
# Atomic Red Team T1552.004-2: Discover Private SSH Keys
# atomic GUID 46959285-906d-40fa-9437-5a439accd878; technique T1552.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    find /root /home /etc -name id_rsa 2>/dev/null >> "$W/keyfile_locations.txt"
}
cleanup() {
    :
}
"$1"
