#!/usr/bin/env bash
# Atomic Red Team T1685-63: Auditing Configuration Changes on Linux Host
# atomic GUID 212cfbcf-4770-4980-bc21-303e37abd0e3; technique T1685
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    sed -i '$ a #art_test_1562_006_1' /etc/audisp/audispd.conf 2>/dev/null
    if [ -f "/etc/auditd.conf" ]; then sed -i '$ a #art_test_1562_006_1' /etc/auditd.conf; else sed -i '$ a #art_test_1562_006_1' /etc/audit/auditd.conf 2>/dev/null; fi
    sed -i '$ a #art_test_1562_006_1' /etc/libaudit.conf 2>/dev/null
}
cleanup() {
    :
}
"$1"
