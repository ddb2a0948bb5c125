#!/usr/bin/env bash
# Instructions per transaction of the pooler process, pgbouncer-rs against PgBouncer,
# counted by callgrind (docs/performance.md, "Instructions per transaction").
#
#   xtask/instructions.sh [BIN] [SCENARIO...]
#
# BIN defaults to target/release/pgbouncer-rs. Scenarios: simple (pgbench -S), rows
# (a 100-row SELECT), extended (-S -M extended), connect (-S -C), queued (-S with a pool
# of 3 servers, so most transactions wait for a server another client releases). Each
# pooler runs twice under callgrind, for 300 and for 1300 transactions per client (10 clients); the
# difference of the two totals over the 10 000 extra transactions cancels start-up and
# shutdown. A throwaway PostgreSQL cluster is started in a temp dir on a free port, and
# stopped at the end. Needs valgrind, PostgreSQL's bin directory and pgbench; PgBouncer
# is skipped when it is not installed. Takes about 3 minutes per scenario and pooler.
# With KEEP=DIR, the longer run's callgrind output of each pooler and scenario is copied
# to DIR (NAME.cg, for callgrind_annotate --inclusive=yes).
set -euo pipefail

BIN=${1:-target/release/pgbouncer-rs}
shift || true
SCENARIOS=${*:-simple rows extended connect}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
BIN=$(readlink -f "$BIN")
command -v valgrind > /dev/null || { echo "instructions: valgrind is not installed" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pgbrs-instructions.XXXXXX)
chmod 755 "$WORK"
RUNAS=()
if [ "$(id -u)" = 0 ]; then
    # PostgreSQL refuses to run as root, and so does PgBouncer.
    id postgres > /dev/null 2>&1 || { echo "instructions: needs a postgres user when run as root" >&2; exit 1; }
    chown postgres "$WORK"
    RUNAS=(setpriv --reuid=postgres --regid=postgres --init-groups)
fi
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
PGPORT=$(free_port)
cleanup() {
    "${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -m immediate stop > /dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

"${RUNAS[@]}" "$PGBIN/initdb" -D "$WORK/pg" -A trust -U bench > /dev/null
cat >> "$WORK/pg/postgresql.conf" <<EOF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
fsync = off
synchronous_commit = off
password_encryption = md5
EOF
"${RUNAS[@]}" "$PGBIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w start > /dev/null
"$PGBIN/psql" -qX -h 127.0.0.1 -p "$PGPORT" -U bench -d postgres \
    -c "create user bench_md5 password 'benchpw' superuser" -c "create database benchdb owner bench"
"$PGBIN/pgbench" -q -i -s 1 -h 127.0.0.1 -p "$PGPORT" -U bench benchdb > /dev/null 2>&1
echo '"bench_md5" "benchpw"' > "$WORK/userlist.txt"
echo "select aid, abalance from pgbench_accounts where aid <= 100;" > "$WORK/rows.sql"
chmod 644 "$WORK/userlist.txt" "$WORK/rows.sql"

# run NAME POOLER TXNS ARGS...: the pooler's total instructions and the transactions done.
run() {
    local name=$1 pooler=$2 txns=$3
    shift 3
    local dir="$WORK/$name-$txns" port
    port=$(free_port)
    mkdir -p "$dir"
    chmod 777 "$dir"
    cat > "$dir/p.ini" <<EOF
[databases]
benchdb = host=127.0.0.1 port=$PGPORT dbname=benchdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = md5
auth_file = $WORK/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
logfile = $dir/log
EOF
    chmod 644 "$dir/p.ini"
    local pre=()
    [ "$pooler" != "$BIN" ] && pre=("${RUNAS[@]}")
    # One worker: under valgrind every thread looks busy, and sessions would spill to a
    # second worker that the PostgreSQL-bound runs measured here never use.
    "${pre[@]}" env TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" \
        "$pooler" "$dir/p.ini" > "$dir/vg.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do
        (echo > "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
        sleep 0.2
    done
    PGPASSWORD=benchpw "$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -U bench_md5 -n -c 10 -j 2 \
        -t "$txns" "$@" benchdb > "$dir/pgbench.out" 2>&1 || true
    kill -INT "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
    local total done_txns
    total=$(cat "$dir"/cg.out* | awk '/^summary:/{s+=$2} END{print s+0}')
    done_txns=$(awk '/number of transactions actually processed/{print $NF}' "$dir/pgbench.out" | cut -d/ -f1)
    echo "$total ${done_txns:-0}"
}

# per_txn NAME POOLER ARGS...: instructions per transaction.
per_txn() {
    local name=$1 pooler=$2 t1 n1 t2 n2
    shift 2
    read -r t1 n1 < <(run "$name" "$pooler" 300 "$@")
    read -r t2 n2 < <(run "$name" "$pooler" 1300 "$@")
    if [ -n "${KEEP:-}" ]; then
        mkdir -p "$KEEP"
        cat "$WORK/$name-1300"/cg.out* > "$KEEP/$name.cg" 2> /dev/null || true
    fi
    if [ "$n2" -le "$n1" ]; then
        echo "failed"
        return
    fi
    awk -v a="$t1" -v b="$t2" -v x="$n1" -v y="$n2" 'BEGIN { printf "%.0f", (b - a) / (y - x) }'
}

PGBOUNCER=$(command -v pgbouncer || ls /usr/sbin/pgbouncer 2> /dev/null || true)
printf '%-10s %14s %14s %8s\n' scenario pgbouncer-rs PgBouncer ratio
for s in $SCENARIOS; do
    POOL=20
    case $s in
        simple) args=(-S -M simple) ;;
        queued) args=(-S -M simple); POOL=3 ;;
        rows) args=(-M simple -f "$WORK/rows.sql") ;;
        extended) args=(-S -M extended) ;;
        connect) args=(-S -C) ;;
        *) echo "instructions: unknown scenario $s" >&2; exit 2 ;;
    esac
    ours=$(per_txn "rs-$s" "$BIN" "${args[@]}")
    theirs=-
    [ -n "$PGBOUNCER" ] && theirs=$(per_txn "pgb-$s" "$PGBOUNCER" "${args[@]}")
    ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2fx", a / b; else print "-" }')
    printf '%-10s %14s %14s %8s\n' "$s" "$ours" "$theirs" "$ratio"
done
