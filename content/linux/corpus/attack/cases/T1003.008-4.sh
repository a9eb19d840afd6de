#!/usr/bin/env bash
# Atomic Red Team T1003.008-4: Access /etc/{shadow,passwd,master.passwd} with a standard bin that's not cat
# atomic GUID df1a55ae-019d-4120-bc35-94f4bc5c4b0a; technique T1003.008
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo -e "e /etc/passwd\n,p\ne /etc/shadow\n,p\n" | ed > "$W/T1003.008.txt" 2>/dev/null
}
cleanup() {
    :
}
"$1"
