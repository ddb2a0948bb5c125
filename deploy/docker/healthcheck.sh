#!/bin/bash
# HEALTHCHECK of the pgbouncer-rs image: GET /healthz on the metrics port and succeed on
# a 200. It uses bash's /dev/tcp, so the image needs neither curl nor wget, and it asks
# the pooler's own endpoint rather than only checking that a process exists.
#
#   METRICS_PORT        the port (9127 in the image); 0 or empty: nothing to check
#   HEALTHCHECK_HOST    127.0.0.1
#   HEALTHCHECK_PATH    /healthz (use /readyz to also require a working server login)
#   HEALTHCHECK_TIMEOUT seconds to wait for the status line, 3
set -u

port=${METRICS_PORT:-}
host=${HEALTHCHECK_HOST:-127.0.0.1}
path=${HEALTHCHECK_PATH:-/healthz}
timeout=${HEALTHCHECK_TIMEOUT:-3}

if [ -z "$port" ] || [ "$port" = 0 ]; then
    echo "METRICS_PORT is not set: no HTTP endpoint to check"
    exit 0
fi
if ! exec 3<> "/dev/tcp/$host/$port"; then
    echo "cannot connect to $host:$port"
    exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
if ! IFS= read -r -t "$timeout" status <&3; then
    echo "no answer from $host:$port$path within ${timeout}s"
    exit 1
fi
status=${status%$'\r'}
case $status in
    "HTTP/1."?" 200"*) exit 0 ;;
    *)
        echo "$path answered: $status"
        exit 1
        ;;
esac
