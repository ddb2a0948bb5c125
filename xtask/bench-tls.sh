#!/usr/bin/env bash
# TLS side by side: PgBouncer and pgbouncer-rs with the same certificates in front of
# the same PostgreSQL (ssl = on), in the same run, targets interleaved per round.
#
#   connect : pgbench -S -C -c $CONNECT_CLIENTS, sslmode=require: one TLS handshake
#             (and one md5 login) per transaction
#   c100    : pgbench -S -M simple -c 100 over TLS to the pooler; the pooler reaches
#             PostgreSQL over TLS too (server_tls_sslmode = require)
#
# Reported per scenario and target: median TPS and median pooler CPU per transaction
# (utime + stime of the pooler process over the run, from /proc), and the ratios
# candidate / PgBouncer. Everything is on 127.0.0.1 in a temp dir removed at exit; only
# processes started here are stopped, by PID.
#
#   CANDIDATE=target/release/pgbouncer-rs xtask/bench-tls.sh
#   CANDIDATE_EXTRA='client_tls13_ciphers = TLS_AES_256_GCM_SHA384' ...   (the suite
#   PgBouncer with OpenSSL negotiates with libpq; ours prefers AES-128-GCM)
set -euo pipefail

DURATION=${DURATION:-10}
REPS=${REPS:-3}
SCALE=${SCALE:-10}
CONNECT_CLIENTS=${CONNECT_CLIENTS:-50}
JOBS=${JOBS:-2}
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
CANDIDATE=${CANDIDATE:?set CANDIDATE to the pgbouncer-rs binary}
SCENARIOS=${SCENARIOS:-"connect c100"}
CANDIDATE_EXTRA=${CANDIDATE_EXTRA:-}   # extra [pgbouncer] lines for the candidate only
BENCH_USER=${BENCH_USER:-bench}

die() { echo "bench-tls: $*" >&2; exit 1; }
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
[[ -x $PGBOUNCER ]] || die "no PgBouncer at $PGBOUNCER (apt-get install -y pgbouncer)"
[[ -x $CANDIDATE ]] || die "no candidate at $CANDIDATE"
CANDIDATE=$(readlink -f "$CANDIDATE")
command -v openssl >/dev/null || die "openssl (the command) is needed to make certificates"

if [[ $EUID -eq 0 ]]; then
    id "$BENCH_USER" >/dev/null 2>&1 || useradd --system --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin "$BENCH_USER"
    AS=(setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups --)
else
    AS=()
fi

TMPD=$(mktemp -d /tmp/bench-tls.XXXXXX)
chmod 755 "$TMPD"
cd "$TMPD"
PG_PID=""
POOLER_PID=""
cleanup() {
    set +e
    [[ -n $POOLER_PID ]] && { kill -TERM "$POOLER_PID"; wait "$POOLER_PID"; }
    [[ -n $PG_PID ]] && { kill -INT "$PG_PID"; wait "$PG_PID"; }
    rm -rf "$TMPD"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------ certificates
# One CA; one ECDSA P-256 certificate for localhost/127.0.0.1 that PostgreSQL and both
# poolers present.
openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=bench CA" -out ca.crt 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out server.key 2>/dev/null
openssl req -new -key server.key -subj "/CN=localhost" -out server.csr 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -sha256 -extfile san.ext -out server.crt 2>/dev/null
chmod 600 server.key ca.key

# ------------------------------------------------------------- postgres
PG_PORT=$(free_port)
PASSWORD=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
mkdir -p pgdata
[[ $EUID -eq 0 ]] && chown -R "$BENCH_USER:" "$TMPD"
"${AS[@]}" "$PGBIN/initdb" -D pgdata -U postgres -A trust --no-sync -E UTF8 >/dev/null
cp server.crt server.key pgdata/
[[ $EUID -eq 0 ]] && chown "$BENCH_USER:" pgdata/server.crt pgdata/server.key
chmod 600 pgdata/server.key
cat >> pgdata/postgresql.conf <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMPD'
max_connections = 120
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = md5
EOF
printf 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhostssl all bench_md5 127.0.0.1/32 md5\n' \
    > pgdata/pg_hba.conf
"${AS[@]}" "$PGBIN/postgres" -D pgdata > pg.log 2>&1 &
PG_PID=$!
for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" && break; sleep 0.1; done
psql_pg() { "$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
psql_pg -c "create role bench_md5 login password '$PASSWORD'" postgres
psql_pg -c "create database benchdb owner bench_md5" postgres
export PGPASSWORD=$PASSWORD PGSSLMODE=require
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U bench_md5 benchdb >/dev/null 2>&1
HASH=$(psql_pg -At -c "select rolpassword from pg_authid where rolname = 'bench_md5'" postgres)
printf '"bench_md5" "%s"\n' "$HASH" > userlist.txt

# --------------------------------------------------------------- poolers
write_ini() {   # $1 target, $2 port
    cat > "$1.ini" <<EOF
[databases]
benchdb = host=127.0.0.1 port=$PG_PORT dbname=benchdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = md5
auth_file = $TMPD/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
logfile = $TMPD/$1.log
log_connections = 0
log_disconnections = 0
client_tls_sslmode = require
client_tls_key_file = $TMPD/server.key
client_tls_cert_file = $TMPD/server.crt
client_tls_ca_file = $TMPD/ca.crt
client_tls_ciphers = default
server_tls_sslmode = require
server_tls_ciphers = default
EOF
    if [[ $1 == candidate && -n $CANDIDATE_EXTRA ]]; then
        printf '%b\n' "$CANDIDATE_EXTRA" >> "$1.ini"
    fi
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run_one() {   # $1 target, $2 scenario; prints "tps cpu_us_per_txn"
    local t=$1 s=$2 bin port before after tps txns
    if [[ $t == pgbouncer ]]; then bin=$PGBOUNCER; else bin=$CANDIDATE; fi
    port=$(free_port)
    write_ini "$t" "$port"
    [[ $EUID -eq 0 ]] && chown "$BENCH_USER:" "$t.ini" userlist.txt server.key
    "${AS[@]}" "$bin" "$t.ini" > "$t.stderr" 2>&1 &
    POOLER_PID=$!
    for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.1; done
    local args=(-S -n -h 127.0.0.1 -p "$port" -U bench_md5 -j "$JOBS")
    case $s in
        connect) args+=(-C -c "$CONNECT_CLIENTS") ;;
        c100) args+=(-M simple -c 100) ;;
    esac
    # A short warm-up fills the pool (and, for c100, opens the server connections).
    timeout 30 "$PGBIN/pgbench" "${args[@]}" -T 2 benchdb >/dev/null 2>&1 || true
    args+=(-T "$DURATION")
    before=$(cpu_ticks "$POOLER_PID")
    local out
    out=$(timeout $((DURATION + 60)) "$PGBIN/pgbench" "${args[@]}" benchdb 2>&1) || die "$t $s: pgbench failed: $out"
    after=$(cpu_ticks "$POOLER_PID")
    kill -TERM "$POOLER_PID"; wait "$POOLER_PID" 2>/dev/null || true
    POOLER_PID=""
    tps=$(grep -oP 'tps = \K[0-9.]+' <<<"$out" | head -1)
    txns=$(grep -oP 'number of transactions actually processed: \K[0-9]+' <<<"$out")
    grep -q 'number of failed transactions: 0' <<<"$out" || die "$t $s: failed transactions: $out"
    local hz; hz=$(getconf CLK_TCK)
    echo "$tps $(python3 -c "print(round(($after - $before) * 1e6 / $hz / $txns, 1))")"
}

declare -A TPS CPU
for s in $SCENARIOS; do
    for r in $(seq "$REPS"); do
        for t in pgbouncer candidate; do
            read -r tps cpu < <(run_one "$t" "$s")
            log "$s round $r $t: $tps tps, $cpu us CPU/txn"
            TPS[$s,$t]+="$tps "
            CPU[$s,$t]+="$cpu "
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "| scenario | PgBouncer TPS | pgbouncer-rs TPS | TPS ratio | PgBouncer CPU/txn | pgbouncer-rs CPU/txn | CPU ratio |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for s in $SCENARIOS; do
    bt=$(median <<<"${TPS[$s,pgbouncer]}"); ct=$(median <<<"${TPS[$s,candidate]}")
    bc=$(median <<<"${CPU[$s,pgbouncer]}"); cc=$(median <<<"${CPU[$s,candidate]}")
    python3 - "$s" "$bt" "$ct" "$bc" "$cc" <<'EOF'
import sys
s, bt, ct, bc, cc = sys.argv[1], *map(float, sys.argv[2:])
print(f"| {s} | {bt:.0f} | {ct:.0f} | {ct/bt:.2f}x | {bc:.1f} us | {cc:.1f} us | {cc/bc:.2f}x |")
EOF
done
