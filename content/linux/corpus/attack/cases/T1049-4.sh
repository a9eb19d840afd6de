#!/usr/bin/env bash
# Atomic Red Team T1049-4: System Network Connections Discovery via ss or lsof (Linux/MacOS)
# atomic GUID bcf05343-ef1d-4052-8a27-b00c9be42b9f; technique T1049
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ss -antp >/dev/null 2>&1 || ss -ant
    ss -aunp >/dev/null 2>&1 || true
}
cleanup() {
    :
}
"$1"
