#!/usr/bin/env bash
# Atomic Red Team T1082-3: List OS Information
# atomic GUID cccb070c-df86-4216-a5bc-9fb60c74e27c; technique T1082
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    uname -a >> $W/T1082.txt
    if [ -f /etc/lsb-release ]; then cat /etc/lsb-release >> $W/T1082.txt; fi
    if [ -f /etc/redhat-release ]; then cat /etc/redhat-release >> $W/T1082.txt; fi
    if [ -f /etc/issue ]; then cat /etc/issue >> $W/T1082.txt; fi
    if [ -f /etc/os-release ]; then cat /etc/os-release >> $W/T1082.txt; fi
    uptime >> $W/T1082.txt
    cat $W/T1082.txt 2>/dev/null >/dev/null
}
cleanup() {
    :
}
"$1"
