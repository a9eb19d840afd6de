#!/usr/bin/env bash
# Atomic Red Team T1552.001-3: Extract passwords with grep
# atomic GUID bd4cf0d1-7646-474e-8610-78ccf5a097c4; technique T1552.001
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    grep -ri password /etc >/dev/null 2>&1
}
cleanup() {
    :
}
"$1"
