#!/usr/bin/env bash
# Atomic Red Team T1059.004-9: Obfuscated command line scripts
# atomic GUID 5bec4cc8-f41e-437b-b417-33ff60acf9af; technique T1059.004
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ART=$(echo -n "id" | base64 -w 0)
    echo "\$(echo $ART | base64 -d)"
    echo $ART | base64 -d | sh
}
cleanup() {
    :
}
"$1"
