#!/usr/bin/env bash
# Atomic Red Team T1053.006-1: Create Systemd Service and Timer
# atomic GUID f4983098-bb13-44fb-9b2c-46149961807b; technique T1053.006
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "[Unit]" > /etc/systemd/system/art-timer.service
    echo "Description=Atomic Red Team Systemd Timer Service" >> /etc/systemd/system/art-timer.service
    echo "[Service]" >> /etc/systemd/system/art-timer.service
    echo "Type=simple" >> /etc/systemd/system/art-timer.service
    echo "ExecStart=/bin/touch /tmp/art-systemd-timer-marker" >> /etc/systemd/system/art-timer.service
    echo "[Install]" >> /etc/systemd/system/art-timer.service
    echo "WantedBy=multi-user.target" >> /etc/systemd/system/art-timer.service
    echo "[Unit]" > /etc/systemd/system/art-timer.timer
    echo "Description=Executes Atomic Red Team Systemd Timer Service" >> /etc/systemd/system/art-timer.timer
    echo "Requires=art-timer.service" >> /etc/systemd/system/art-timer.timer
    echo "[Timer]" >> /etc/systemd/system/art-timer.timer
    echo "Unit=art-timer.service" >> /etc/systemd/system/art-timer.timer
    echo "OnCalendar=*-*-* *:*:00" >> /etc/systemd/system/art-timer.timer
    echo "[Install]" >> /etc/systemd/system/art-timer.timer
    echo "WantedBy=timers.target" >> /etc/systemd/system/art-timer.timer
    systemctl daemon-reload 2>/dev/null
}
cleanup() {
    rm -f /etc/systemd/system/art-timer.service /etc/systemd/system/art-timer.timer /tmp/art-systemd-timer-marker; systemctl daemon-reload 2>/dev/null
}
"$1"
