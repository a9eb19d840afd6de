#!/usr/bin/env bash
# Atomic Red Team T1543.002-3: Create Systemd Service file,  Enable the service , Modify and Reload the service.
# atomic GUID c35ac4a8-19de-43af-b9f8-755da7e89c89; technique T1543.002
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    echo "#!/bin/bash" > /etc/init.d/T1543.002
    echo "### BEGIN INIT INFO" >> /etc/init.d/T1543.002
    echo "# Provides : Atomic Test T1543.002" >> /etc/init.d/T1543.002
    echo "### END INIT INFO" >> /etc/init.d/T1543.002
    echo "python3 -c \"import os, base64;exec(base64.b64decode('aW1wb3J0IG9zCm9zLnBvcGVuKCdlY2hvIGF0b21pYyB0ZXN0IGZvciBDcmVhdGluZyBTeXN0ZW1kIFNlcnZpY2UgVDE1NDMuMDAyID4gL3RtcC9UMTU0My4wMDIuc3lzdGVtZC5zZXJ2aWNlLmNyZWF0aW9uJykK')) \" " >> /etc/init.d/T1543.002
    chmod +x /etc/init.d/T1543.002
}
cleanup() {
    rm -f /etc/init.d/T1543.002 /tmp/T1543.002.systemd.service.creation
}
"$1"
