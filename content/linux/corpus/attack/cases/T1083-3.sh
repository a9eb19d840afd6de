#!/usr/bin/env bash
# Atomic Red Team T1083-3: Nix File and Directory Discovery
# atomic GUID ffc8b249-372a-4b74-adcd-e4c0430842de; technique T1083
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    ls -a >> $W/T1083.txt
    if [ -d /Library/Preferences/ ]; then ls -la /Library/Preferences/ > $W/T1083.txt; fi
    file */* *>> $W/T1083.txt 2>/dev/null
    cat $W/T1083.txt 2>/dev/null >/dev/null
    find . -type f >/dev/null
    ls -R | grep ":$" | sed -e 's/:$//' -e 's/[^-][^\/]*\//--/g' -e 's/^/ /' -e 's/-/|/' >/dev/null
    locate *.png 2>/dev/null
    find . -type f -name "*.png" 2>/dev/null
}
cleanup() {
    :
}
"$1"
