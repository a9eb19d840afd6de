#!/usr/bin/env bash
# Atomic Red Team T1078.003-8: Create local account (Linux)
# atomic GUID 02a91c34-8a5b-4bed-87af-501103eb5357; technique T1078.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    password=$(openssl passwd -1 "$(head -c 12 /dev/urandom | base64)")
    useradd --shell /bin/bash --create-home --password $password art
    su art -c "whoami; exit"
}
cleanup() {
    userdel -rf art 2>/dev/null
}
"$1"
