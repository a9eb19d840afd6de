#!/usr/bin/env bash
# Atomic Red Team T1489-5: Linux - Stop service by killing process using killall
# atomic GUID e5d95be6-02ee-4ff1-aebe-cf86013b6189; technique T1489
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    killall -SIGTERM cron 2>/dev/null
}
cleanup() {
    :
}
"$1"
