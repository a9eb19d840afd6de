#!/usr/bin/env bash
# Atomic Red Team T1140-5: Base64 decoding with shell utilities
# atomic GUID b4f6a567-a27a-41e5-b8ef-ac4b4008bb7e; technique T1140
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ENCODED=$(echo 'Hello from Atomic Red Team test T1140!' | base64)
    printf $ENCODED | base64 -d
    echo $ENCODED > "$W/T1140.encoded"
    cat "$W/T1140.encoded" | base64 -d
    echo $ENCODED | base64 -d
}
cleanup() {
    :
}
"$1"
