#!/usr/bin/env bash
# Atomic Red Team T1136.001-1: Create a user account on a Linux system
# atomic GUID 40d8eabd-e394-46f6-8785-b9bfa1d011d2; technique T1136.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    useradd -M -N -r -s /bin/bash -c evil_account evil_user
}
cleanup() {
    userdel evil_user
}
"$1"
