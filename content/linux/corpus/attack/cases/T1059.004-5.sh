#!/usr/bin/env bash
# Atomic Red Team T1059.004-5: New script file in the tmp directory
# atomic GUID 8cd1947b-4a54-41fb-b5ea-07d0ace04f81; technique T1059.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    TMPFILE=$(mktemp)
    echo "id" > $TMPFILE
    bash $TMPFILE
    rm -f $TMPFILE
}
cleanup() {
    :
}
"$1"
