#!/usr/bin/env bash
# Rebuild the eBPF objects from bpf/*.bpf.c into a temporary directory and fail if any byte
# differs from the committed bpf/obj/*.bpf.o (or if an object is missing on either side).
# Needs clang-19 and llvm-19 (llvm-strip-19); CI runs it after installing them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Build from a copy in another directory: the objects must not depend on where they are built.
cp "$root"/bpf/*.bpf.c "$root"/bpf/*.h "$root"/bpf/Makefile "$tmp"/
make -s -C "$tmp" OUT="$tmp/obj" >/dev/null

status=0
for built in "$tmp"/obj/*.bpf.o; do
    name="$(basename "$built")"
    committed="$root/bpf/obj/$name"
    if [[ ! -f "$committed" ]]; then
        echo "bpf-check: bpf/obj/$name is not committed (run make -C bpf)" >&2
        status=1
    elif ! cmp -s "$built" "$committed"; then
        echo "bpf-check: bpf/obj/$name differs from a fresh build of bpf/${name%.o}.c (run make -C bpf and commit)" >&2
        status=1
    fi
done
for committed in "$root"/bpf/obj/*.bpf.o; do
    name="$(basename "$committed")"
    if [[ ! -f "$tmp/obj/$name" ]]; then
        echo "bpf-check: bpf/obj/$name has no source bpf/${name%.o}.c" >&2
        status=1
    fi
done
if [[ $status -eq 0 ]]; then
    echo "bpf-check: $(ls "$root"/bpf/obj/*.bpf.o | wc -l) objects match their sources"
fi
exit $status
