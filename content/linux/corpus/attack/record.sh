#!/usr/bin/env bash
# Records the attack corpus: runs the live agent as root in one mode, runs every case of
# cases/ (one Atomic Red Team test each, adapted to run safely here: see cases.json) under it,
# each in its own throwaway directory and process tree, stops the agent with SIGINT, and keeps
# each case's events in MODE/<case>.jsonl.gz.
#
#   cargo build -p ringfence
#   content/linux/corpus/attack/record.sh ebpf        # writes ebpf/*.jsonl.gz beside this script
#   content/linux/corpus/attack/record.sh driverless  # writes driverless/*.jsonl.gz
#
# A case runs as `timeout 30 bash cases/ID.sh run DIR`; its events are those whose
# `process.pid` or `process.ancestors.pid` is that command's pid. Its cleanup (`cases/ID.sh
# cleanup DIR`: files restored, accounts removed) runs after, outside that tree, and is not
# recorded. The agent's own findings (`event.kind: alert`) are left out. Needs python3.
set -u

MODE="${1:?usage: record.sh ebpf|driverless}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
RAW="$(mktemp /tmp/attack-raw.XXXXXX.jsonl)"
PIDS="$(mktemp /tmp/attack-pids.XXXXXX)"

"$REPO/target/debug/ringfence" agent run --mode "$MODE" --no-supervisor \
    --output "jsonl:$RAW" 2>"$RAW.log" &
AGENT=$!
for _ in $(seq 1 60); do
    grep -q 'source started' "$RAW.log" 2>/dev/null && break
    sleep 0.5
done
# A started source may still be setting up (driverless: marks, /proc): wait until a probe
# process shows up in the output, then a little longer for the file marks.
for _ in $(seq 1 120); do
    sleep 0.3 &
    probe=$!
    wait "$probe"
    sleep 0.5
    grep -q "\"pid\":$probe[,}]" "$RAW" 2>/dev/null && break
done
sleep 5
for case in "$HERE"/cases/*.sh; do
    id="$(basename "$case" .sh)"
    W="$(mktemp -d /tmp/attack.XXXXXX)"
    chmod 755 "$W"
    timeout 30 bash "$case" run "$W" </dev/null >/dev/null 2>&1 &
    echo "$id $!" >>"$PIDS"
    wait $!
    sleep 1
    bash "$case" cleanup "$W" </dev/null >/dev/null 2>&1
    rm -rf "$W"
    echo "== $id" >&2
done
sleep 2
kill -INT "$AGENT"
wait "$AGENT"
rm -rf "${HERE:?}/$MODE"
mkdir -p "$HERE/$MODE"
python3 - "$RAW" "$PIDS" "$HERE/$MODE" <<'PY'
import gzip, json, sys
raw, pids, out = sys.argv[1:4]
case_of = {}
for line in open(pids):
    cid, pid = line.split()
    case_of[int(pid)] = cid
files = {}
kept = 0
for line in open(raw, errors="replace"):
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if d.get("event", {}).get("kind") == "alert":
        continue
    p = d.get("process", {})
    tree = [p.get("pid")] + list((p.get("ancestors") or {}).get("pid") or [])
    cid = next((case_of[x] for x in tree if x in case_of), None)
    if cid is None:
        continue
    if cid not in files:
        files[cid] = []
    files[cid].append(line if line.endswith("\n") else line + "\n")
    kept += 1
for cid in case_of.values():
    with open(f"{out}/{cid}.jsonl.gz", "wb") as f:
        f.write(gzip.compress("".join(files.get(cid, [])).encode(), 9, mtime=0))
print(f"{kept} events of {len(case_of)} cases in {out}", file=sys.stderr)
PY
rm -f "$RAW" "$RAW.log" "$PIDS"
