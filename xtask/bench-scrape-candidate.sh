#!/usr/bin/env bash
# A candidate for ../shared/bench/run.sh: pgbouncer-rs with its HTTP listener on and a
# scraper fetching /metrics once a second for as long as the pooler runs, the way a
# Prometheus server would. Started as `bench-scrape-candidate.sh pgbouncer.ini` by
# run.sh; SCRAPE_BINARY names the pgbouncer-rs binary.
set -euo pipefail
ini=$1
bin=${SCRAPE_BINARY:?SCRAPE_BINARY must name the pgbouncer-rs binary}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
scraped="${ini%.ini}.scraped.ini"
# [pgbouncer] is the last section of run.sh's ini: the line lands in it.
{ cat "$ini"; echo "metrics_listen_port = $port"; } > "$scraped"
pooler=$$
# Detached (setsid), so its CPU is not counted as the pooler's; it ends with the pooler.
setsid -f bash -c '
    while kill -0 '"$pooler"' 2>/dev/null; do
        curl -s -o /dev/null --max-time 5 "http://127.0.0.1:'"$port"'/metrics" || true
        sleep 1
    done' > /dev/null 2>&1 < /dev/null
exec "$bin" "$scraped"
