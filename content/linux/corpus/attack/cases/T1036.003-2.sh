#!/usr/bin/env bash
# Atomic Red Team T1036.003-2: Masquerading as FreeBSD or Linux crond process.
# atomic GUID a315bfff-7a98-403b-b442-2ea1b255e556; technique T1036.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cp /bin/sh /tmp/crond
    echo 'sleep 1' | /tmp/crond
}
cleanup() {
    rm -f /tmp/crond
}
"$1"
