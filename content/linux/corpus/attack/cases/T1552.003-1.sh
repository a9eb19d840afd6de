#!/usr/bin/env bash
# Atomic Red Team T1552.003-1: Search Through Bash History
# atomic GUID 3cfde62b-7c33-4b26-a61e-755d6131c8ce; technique T1552.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    export HOME="$W"; echo "mysql -u root -p hunter2" > ~/.bash_history
    cat ~/.bash_history | grep -e '-p ' -e 'pass' -e 'ssh' > ~/loot.txt
}
cleanup() {
    :
}
"$1"
