#!/usr/bin/env bash
# Does a Prometheus scrape cost forwarding anything? The reference harness
# (../shared/bench/run.sh) twice at -c 100 (scenario "select"), PgBouncer against
# pgbouncer-rs in each run: once plain, once with /metrics scraped every second
# (bench-scrape-candidate.sh). Compare the two TPS ratios against PgBouncer.
#
#   CANDIDATE=target/release/pgbouncer-rs xtask/bench-scrape.sh
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BENCH=${BENCH:-$HERE/../../shared/bench/run.sh}
CANDIDATE=$(readlink -f "${CANDIDATE:?set CANDIDATE to the pgbouncer-rs binary}")
export DURATION=${DURATION:-10} REPS=${REPS:-3} SCENARIOS=select CLIENTS=${CLIENTS:-100}
OUT_BASE=${OUT_BASE:-$(mktemp -d /tmp/bench-scrape.XXXXXX)}
mkdir -p "$OUT_BASE"
chmod 755 "$OUT_BASE"

CANDIDATE=$CANDIDATE CANDIDATE_NAME=plain TARGETS="pgbouncer plain" \
    OUT=$OUT_BASE/plain "$BENCH"
SCRAPE_BINARY=$CANDIDATE CANDIDATE=$HERE/bench-scrape-candidate.sh CANDIDATE_NAME=scraped \
    TARGETS="pgbouncer scraped" OUT=$OUT_BASE/scraped "$BENCH"
for run in plain scraped; do
    echo "== $run"
    cat "$OUT_BASE/$run/summary.md"
done
