#!/usr/bin/env bash
# Atomic Red Team T1685-62: Disable ASLR Via sysctl parameters - Linux
# atomic GUID ac333fe1-ce2b-400b-a117-538634427439; technique T1685
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    cat /proc/sys/kernel/randomize_va_space > "$W/aslr"
    sysctl -w kernel.randomize_va_space=0 >/dev/null
}
cleanup() {
    sysctl -w kernel.randomize_va_space="$(cat "$W/aslr")" >/dev/null
}
"$1"
