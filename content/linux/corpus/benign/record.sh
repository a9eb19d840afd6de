#!/usr/bin/env bash
# Records the benign corpus: runs the live agent as root in one mode, does ordinary server work
# under it (an admin session, a build, database maintenance, package queries, a cron-like job),
# stops the agent with SIGINT, and keeps the events of this session's process tree.
#
#   cargo build -p ringfence
#   content/linux/corpus/benign/record.sh ebpf        # writes ebpf.jsonl.gz beside this script
#   content/linux/corpus/benign/record.sh driverless  # writes driverless.jsonl.gz
#
# The agent sees the whole host; events of processes outside the session (other users' builds,
# the host's own services) are left out by `process.pid` / `process.ancestors.pid`, and so are
# the agent's own findings (`event.kind: alert`). Needs jq, gzip and PostgreSQL's binaries.
set -u

MODE="${1:?usage: record.sh ebpf|driverless}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../../../.." && pwd)"
RAW="$(mktemp /tmp/benign-raw.XXXXXX.jsonl)"
OUT="$HERE/$MODE.jsonl.gz"

session() {
    W="$(mktemp -d /tmp/benign.XXXXXX)"
    chmod 755 "$W"
    step() { echo "== $*" >&2; }

    step admin
    ls -la /etc >/dev/null
    cat /etc/hostname /etc/os-release >/dev/null
    grep -r PermitRootLogin /etc/ssh/ >/dev/null 2>&1
    grep -c . /etc/passwd >/dev/null
    systemctl status --no-pager cron >/dev/null 2>&1
    systemctl status --no-pager >/dev/null 2>&1
    journalctl -n 20 --no-pager >/dev/null 2>&1
    ps aux >/dev/null
    df -h >/dev/null
    ss -tlnp >/dev/null
    id
    uname -a
    hostname
    printf 'listen 80\nworkers 2\n' >"$W/app.conf"
    sed -i 's/workers 2/workers 4/' "$W/app.conf"
    cat "$W/app.conf" >/dev/null
    mkdir -p "$W/home/alice/docs"
    echo notes >"$W/home/alice/docs/notes.txt"
    tar -czf "/var/tmp/home-backup-$$.tar.gz" -C "$W/home" alice
    tar -tzf "/var/tmp/home-backup-$$.tar.gz" >/dev/null
    rm -f "/var/tmp/home-backup-$$.tar.gz"
    crontab -l >/dev/null 2>&1
    apt-cache policy bash >/dev/null
    uptime
    w >/dev/null
    last -n 5 >/dev/null 2>&1
    free -m >/dev/null
    lsblk >/dev/null 2>&1
    ip addr >/dev/null
    ip route >/dev/null
    getent passwd root >/dev/null
    find /var/log -name '*.gz' -mtime +30 >/dev/null 2>&1
    tar -czf "/var/tmp/etc-backup-$$.tar.gz" -C / etc 2>/dev/null
    sha256sum "/var/tmp/etc-backup-$$.tar.gz" >/dev/null
    rm -f "/var/tmp/etc-backup-$$.tar.gz"
    ssh-keygen -q -t ed25519 -N '' -C deploy -f "$W/deploy_key"
    ssh-keygen -l -f "$W/deploy_key.pub" >/dev/null
    openssl x509 -noout -subject -enddate -in /etc/ssl/certs/ca-certificates.crt >/dev/null 2>&1
    sleep 1

    step build
    mkdir -p "$W/hello"
    cat >"$W/hello/hello.c" <<'C'
    #include <stdio.h>
    int main(void) { puts("hello"); return 0; }
C
    printf 'hello: hello.c\n\tcc -O2 -o hello hello.c\n' >"$W/hello/Makefile"
    make -C "$W/hello" >/dev/null
    "$W/hello/hello" >/dev/null
    (
        cd "$W/hello" &&
            git init -q . &&
            git add hello.c Makefile &&
            git -c user.name=admin -c user.email=admin@example.invalid commit -qm 'hello'
            git log --oneline >/dev/null
    )
    if command -v cargo >/dev/null; then
        mkdir -p "$W/tiny/src"
        printf '[package]\nname = "tiny"\nversion = "0.1.0"\nedition = "2021"\n' >"$W/tiny/Cargo.toml"
        echo 'fn main() { println!("tiny"); }' >"$W/tiny/src/main.rs"
        (cd "$W/tiny" && CARGO_TARGET_DIR="$W/tiny/target" cargo build -q --offline)
    fi
    sleep 1

    step database
    BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
    PG="$W/pg"
    mkdir -p "$PG"
    chown postgres:postgres "$PG"
    as_pg() { runuser -u postgres -- "$@"; }
    as_pg "$BIN/initdb" -D "$PG" -U postgres -A trust -E UTF8 >/dev/null
    as_pg "$BIN/pg_ctl" -D "$PG" -l "$PG/server.log" -w \
        -o "-p 55499 -k $PG -c listen_addresses=127.0.0.1" start >/dev/null
    as_pg "$BIN/createdb" -h 127.0.0.1 -p 55499 -U postgres shop
    as_pg "$BIN/psql" -q -h 127.0.0.1 -p 55499 -U postgres -d shop \
        -c 'CREATE TABLE orders (id serial PRIMARY KEY, item text)' \
        -c "INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 1000) g"
    as_pg "$BIN/psql" -q -h 127.0.0.1 -p 55499 -U postgres -d shop -c 'VACUUM' -c 'ANALYZE'
    as_pg "$BIN/pg_dump" -h 127.0.0.1 -p 55499 -U postgres -f "$PG/shop.sql" shop
    su -s /bin/sh postgres -c "$BIN/psql -h 127.0.0.1 -p 55499 -U postgres -d shop -tAc 'SELECT count(*) FROM orders'" >/dev/null
    as_pg "$BIN/vacuumdb" -h 127.0.0.1 -p 55499 -U postgres --analyze shop >/dev/null
    as_pg "$BIN/pg_ctl" -D "$PG" -m fast -w stop >/dev/null
    sleep 1

    step packages
    dpkg -l | head -n 20 >/dev/null
    apt-get -s install cowsay >/dev/null 2>&1
    # A real install and removal of a small package (its maintainer scripts and triggers run).
    # Then everything the install added is purged again, and nothing else.
    dpkg-query -W -f '${Package}\n' | sort >"$W/packages.before"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q cowsay >/dev/null 2>&1
    /usr/games/cowsay moo >/dev/null
    dpkg-query -W -f '${Package}\n' | sort >"$W/packages.after"
    # shellcheck disable=SC2046 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get purge -y -q \
        $(comm -13 "$W/packages.before" "$W/packages.after") >/dev/null 2>&1

    step housekeeping
    # A service account for an application, created and removed again.
    useradd --system --no-create-home --shell /usr/sbin/nologin benignsvc
    id benignsvc >/dev/null
    userdel benignsvc
    # Disk space: old rotated logs and journal files (these names and ages match nothing here).
    rm -f /var/log/syslog.9.gz /var/log/auth.log.9.gz /var/log/nginx/access.log.14.gz
    find /var/log -name '*.gz' -mtime +3650 -delete
    journalctl --vacuum-time=3650d >/dev/null 2>&1
    du -sh /var/log >/dev/null 2>&1
    logger -t benign "maintenance done"
    systemctl daemon-reload >/dev/null 2>&1

    step cron
    run-parts --test /etc/cron.daily >/dev/null
    # A nightly backup job, run the way cron runs /etc/cron.daily: /etc archived, then copied to
    # a backup host (here 127.0.0.1 with no key: the copy is refused, the commands are the same).
    mkdir -p "$W/cron.daily"
    cat >"$W/cron.daily/backup-etc" <<'JOB'
#!/bin/sh
set -e
out=/var/tmp/etc-$(hostname)-$(date +%Y%m%d).tar.gz
tar -czf "$out" /etc 2>/dev/null
scp -q -o BatchMode=yes -o ConnectTimeout=2 -o StrictHostKeyChecking=no \
    "$out" backup@127.0.0.1:/srv/backups/ 2>/dev/null || true
rm -f "$out"
JOB
    chmod 755 "$W/cron.daily/backup-etc"
    run-parts --report "$W/cron.daily"

    rm -rf "$W"
    step done
}

"$REPO/target/debug/ringfence" agent run --mode "$MODE" --no-supervisor \
    --output "jsonl:$RAW" 2>"$RAW.log" &
AGENT=$!
# Wait for the sources to start.
for _ in $(seq 1 60); do
    grep -q 'source started' "$RAW.log" 2>/dev/null && break
    sleep 0.5
done
sleep 2
session &
ROOT=$!
wait "$ROOT"
sleep 2
kill -INT "$AGENT"
wait "$AGENT"
jq -c --argjson root "$ROOT" \
    'select(.event.kind != "alert")
     | select(.process.pid == $root or ((.process.ancestors.pid // []) | index($root)))' \
    "$RAW" | gzip -9n >"$OUT"
echo "$(zcat "$OUT" | wc -l) events of session $ROOT in $OUT ($(wc -l <"$RAW") recorded)" >&2
rm -f "$RAW" "$RAW.log"
