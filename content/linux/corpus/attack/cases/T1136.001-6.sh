#!/usr/bin/env bash
# Atomic Red Team T1136.001-6: Create a new user in Linux with `root` UID and GID.
# atomic GUID a1040a30-d28b-4eda-bd99-bb2861a4616c; technique T1136.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    useradd -g 0 -M -d /root -s /bin/bash butter
    echo "butter:$(head -c 12 /dev/urandom | base64)" | chpasswd
}
cleanup() {
    userdel butter
}
"$1"
