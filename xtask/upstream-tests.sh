#!/usr/bin/env bash
# Runs PgBouncer's own Python test suite (its test/ directory, unchanged) against the
# pgbouncer-rs binary: a local check, not part of CI (it needs PgBouncer's source).
#
#   UPSTREAM_SRC=/path/to/pgbouncer-checkout xtask/upstream-tests.sh [pytest args...]
#   UPSTREAM_GIT=/path/to/bare.git          xtask/upstream-tests.sh test/test_ssl.py
#
# (Not PGBOUNCER_*: pgbouncer-rs reads every PGBOUNCER_* variable as a setting and
# refuses unknown ones; the tests run with a clean environment anyway.)
#
# BOUNCER_EXE defaults to target/release/pgbouncer-rs. The suite refuses to run
# PostgreSQL as root, so under root it runs as the unprivileged user $TEST_USER (created
# if missing). Everything happens in a temp dir ($WORK, removed unless KEEP=1).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BOUNCER_EXE=$(readlink -f "${BOUNCER_EXE:-$HERE/target/release/pgbouncer-rs}")
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
TEST_USER=${TEST_USER:-pgtest}
WORK=${WORK:-$(mktemp -d /tmp/upstream-tests.XXXXXX)}
[[ -x $BOUNCER_EXE ]] || { echo "no binary at $BOUNCER_EXE (cargo build --release)" >&2; exit 1; }

mkdir -p "$WORK/src"
if [[ -n ${UPSTREAM_SRC:-} ]]; then
    cp -r "$UPSTREAM_SRC"/. "$WORK/src/"
elif [[ -n ${UPSTREAM_GIT:-} ]]; then
    git --git-dir="$UPSTREAM_GIT" archive HEAD | tar -x -C "$WORK/src"
else
    echo "set UPSTREAM_SRC (a checkout) or UPSTREAM_GIT (a git dir) of PgBouncer" >&2
    exit 1
fi
# test/utils.py reads the build's feature flags from config.mak.
printf 'tls_support = yes\nldap_support = no\n' > "$WORK/src/config.mak"

# The suite's Python dependencies, in a venv of the system Python (readable by the
# test user, unlike a Python under /root).
PY=$(command -v /usr/bin/python3 || command -v python3)
"$PY" -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install --quiet pytest pytest-asyncio pytest-timeout pytest-xdist \
    'psycopg[binary]' filelock

cp "$BOUNCER_EXE" "$WORK/pgbouncer-rs"
chmod 755 "$WORK" "$WORK/pgbouncer-rs"
cat > "$WORK/run.sh" <<EOF
#!/bin/sh
cd "$WORK/src"
export PATH="$PGBIN:$WORK/venv/bin:/usr/bin:/bin"
export HOME="$WORK"
export BOUNCER_EXE="$WORK/pgbouncer-rs"
# pytest-asyncio warns about its loop scope default and the suite turns warnings into
# errors; say it explicitly.
exec python -m pytest -p no:cacheprovider --basetemp="$WORK/tmp" \
    -o asyncio_default_fixture_loop_scope=function "\$@"
EOF
chmod 755 "$WORK/run.sh"

status=0
if [[ $EUID -eq 0 ]]; then
    id "$TEST_USER" >/dev/null 2>&1 || useradd -M "$TEST_USER"
    chown -R "$TEST_USER" "$WORK"
    timeout "${TIMEOUT:-3600}" env -i setpriv --reuid="$TEST_USER" --regid="$TEST_USER" \
        --init-groups "$WORK/run.sh" "${@:-test}" -rA || status=$?
else
    timeout "${TIMEOUT:-3600}" env -i "$WORK/run.sh" "${@:-test}" -rA || status=$?
fi
# Tests of the online restart (-R, not supported) leave their poolers running: stop
# every process of this run's binary copy, by PID.
for pid in $(pgrep -f "^$WORK/pgbouncer-rs " || true); do
    kill "$pid" 2>/dev/null || true
done
if [[ ${KEEP:-0} == 1 ]]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
exit "$status"
