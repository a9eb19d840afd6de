#!/usr/bin/env bash
# Atomic Red Team T1552.004-3: Copy Private SSH Keys with CP
# atomic GUID 7c247dc7-5128-4643-907b-73a76d9135c3; technique T1552.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    mkdir "$W/art-staging"
    find /root /home /etc -name id_rsa 2>/dev/null -exec cp --parents {} "$W/art-staging" \;
}
cleanup() {
    :
}
"$1"
