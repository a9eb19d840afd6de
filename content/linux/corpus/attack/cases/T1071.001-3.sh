#!/usr/bin/env bash
# Atomic Red Team T1071.001-3: Malicious User Agents - Nix
# atomic GUID 2d7c471a-e887-4b78-b0dc-b0df1f2e0658; technique T1071.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    curl -s -A "HttpBrowser/1.0" -m3 http://c2.invalid/
    curl -s -A "Wget/1.9+cvs-stable (Red Hat modified)" -m3 http://c2.invalid/
    curl -s -A "Opera/8.81 (Windows NT 6.0; U; en)" -m3 http://c2.invalid/
    curl -s -A "*<|>*" -m3 http://c2.invalid/
}
cleanup() {
    :
}
"$1"
