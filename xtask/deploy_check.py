#!/usr/bin/env python3
"""Checks of deploy/ that need no container runtime, cluster or systemd: run by
xtask/deploy-check.sh, which adds promtool, systemd-analyze and hadolint when present.

* every YAML file parses;
* the alert rules have the required fields, the expected alerts and durations, and
  mention only metric names pgbouncer-rs serves;
* the Kubernetes manifests validate against the official schemas bundled in the
  kubernetes-validate package (strict: unknown fields are errors), the ServiceMonitor
  against the prometheus-operator schema (npm @kubernetes-models/prometheus-operator),
  and the objects agree with each other (labels, port names, mounted files);
* docker-compose.yml, the Prometheus config, the Django settings, the Dockerfile and
  the systemd units have the settings the deployment depends on.

Exits 1 on any problem. A check whose tool is missing is reported as skipped; with CI
set, a skip is a problem too (CI must not pass by skipping).
"""

import configparser
import fnmatch
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CI = os.environ.get("CI", "") not in ("", "0", "false", "False")

# Metric names the alert rules may use: pgbouncer_exporter's, plus two of ours.
METRICS = {
    "pgbouncer_up",
    "pgbouncer_pools_client_waiting_connections",
    "pgbouncer_pools_client_active_connections",
    "pgbouncer_pools_server_active_connections",
    "pgbouncer_pools_server_idle_connections",
    "pgbouncer_pools_server_used_connections",
    "pgbouncer_pools_client_maxwait_seconds",
    "pgbouncer_config_max_client_connections",
    "pgbouncer_used_clients",
    "pgbouncer_databases_pool_size",
    "pgbouncer_pool_size",
    "pgbouncer_client_connections",
}
# alert name -> (for, metrics its expression must use)
ALERTS = {
    "PgBouncerPoolExhausted": ("1m", {"pgbouncer_pools_client_waiting_connections"}),
    "PgBouncerClientWaitTooLong": ("1m", {"pgbouncer_pools_client_maxwait_seconds"}),
    "PgBouncerPoolOverProvisioned": (
        "30m",
        {"pgbouncer_pools_server_idle_connections", "pgbouncer_pool_size"},
    ),
    "PgBouncerClientConnectionsNearLimit": (
        "2m",
        {"pgbouncer_used_clients", "pgbouncer_config_max_client_connections"},
    ),
    "PgBouncerDown": ("2m", {"pgbouncer_up"}),
}
PROMQL_WORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right",
}
PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "avg", "avg_over_time", "clamp_min", "clamp_max",
    "count", "count_over_time", "delta", "deriv", "increase", "irate", "max",
    "max_over_time", "min", "min_over_time", "quantile", "quantile_over_time", "rate",
    "sum", "sum_over_time", "topk", "bottomk", "vector", "scalar", "time",
}
# Kubernetes versions to validate against: an old one still in service and the newest
# schema the package has.
K8S_VERSIONS = ["1.28.0", None]

problems = []
skips = []


def check(ok, message):
    if not ok:
        problems.append(message)
    return ok


def skip(what, why):
    skips.append(f"{what}: {why}")
    print(f"SKIPPED: {what}: {why}")


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def rel(path):
    return str(Path(path).relative_to(ROOT))


# --- YAML -------------------------------------------------------------------------------


def check_yaml_parses():
    files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))
    for path in files:
        try:
            docs = load_yaml(path)
            check(docs and all(d is not None for d in docs), f"{rel(path)}: empty document")
        except yaml.YAMLError as e:
            problems.append(f"{rel(path)}: does not parse: {e}")
    print(f"yaml: {len(files)} files parsed")


# --- Prometheus ---------------------------------------------------------------------------


def metric_names(expr):
    """The metric names an expression selects (label matchers, ranges, grouping clauses
    and string literals removed; functions and keywords left out)."""
    text = re.sub(r'"(\\.|[^"\\])*"', " ", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(\.\d+)?(ms|[smhdwy])?\b", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group(0)
        follows = text[m.end():].lstrip()[:1]
        if word in PROMQL_WORDS:
            continue
        if follows == "(":
            check(word in PROMQL_FUNCTIONS, f"alerts.yml: unknown function {word}() in {expr!r}")
            continue
        names.add(word)
    return names


def check_alert_rules():
    path = DEPLOY / "prometheus/alerts.yml"
    (doc,) = load_yaml(path)
    seen = {}
    for group in doc.get("groups", []):
        check(group.get("name"), "alerts.yml: a group without a name")
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if not check(name, f"alerts.yml: a rule without `alert` in {group.get('name')}"):
                continue
            check(name not in seen, f"alerts.yml: {name} defined twice")
            seen[name] = rule
            expr = rule.get("expr", "")
            check(expr.strip(), f"alerts.yml: {name} has no expr")
            used = metric_names(expr)
            check(used, f"alerts.yml: {name}: expr uses no metric")
            check(used <= METRICS, f"alerts.yml: {name}: unknown metrics {sorted(used - METRICS)}")
            check(
                re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))),
                f"alerts.yml: {name}: `for` missing or not a duration",
            )
            severity = rule.get("labels", {}).get("severity")
            check(
                severity in ("info", "warning", "critical"),
                f"alerts.yml: {name}: severity {severity!r} not info/warning/critical",
            )
            annotations = rule.get("annotations", {})
            for key in ("summary", "description"):
                check(annotations.get(key), f"alerts.yml: {name}: no {key} annotation")
    for name, (duration, metrics) in ALERTS.items():
        rule = seen.get(name)
        if not check(rule, f"alerts.yml: alert {name} missing"):
            continue
        check(rule.get("for") == duration, f"alerts.yml: {name}: for {rule.get('for')}, want {duration}")
        used = metric_names(rule["expr"])
        check(metrics <= used, f"alerts.yml: {name}: expr should use {sorted(metrics)}")
    print(f"alerts: {len(seen)} rules, metric names checked against {len(METRICS)} known")

    (tests,) = load_yaml(DEPLOY / "prometheus/alerts.test.yml")
    check(tests.get("rule_files") == ["alerts.yml"], "alerts.test.yml: rule_files should be [alerts.yml]")
    tested = {t["alertname"] for case in tests.get("tests", []) for t in case.get("alert_rule_test", [])}
    check(set(ALERTS) <= tested, f"alerts.test.yml: untested alerts {sorted(set(ALERTS) - tested)}")

    (prom,) = load_yaml(DEPLOY / "prometheus/prometheus.yml")
    check(prom.get("rule_files") == ["alerts.yml"], "prometheus.yml: rule_files should be [alerts.yml]")
    targets = [t for job in prom.get("scrape_configs", []) for c in job.get("static_configs", []) for t in c["targets"]]
    check(targets == ["pgbouncer:9127"], f"prometheus.yml: targets {targets}, want pgbouncer:9127")


# --- docker-compose, Django, Dockerfile -----------------------------------------------------


def env_file(path):
    values = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def check_compose():
    compose_dir = DEPLOY / "docker"
    (doc,) = load_yaml(compose_dir / "docker-compose.yml")
    services = doc.get("services", {})
    check(
        {"postgres", "pgbouncer", "web", "prometheus"} <= set(services),
        f"docker-compose.yml: services {sorted(services)}",
    )
    pooler = services.get("pgbouncer", {})
    build = pooler.get("build", {})
    context = (compose_dir / build.get("context", ".")).resolve()
    check(context == ROOT, "docker-compose.yml: pgbouncer builds from the repository root")
    check((context / build.get("dockerfile", "Dockerfile")).is_file(), "docker-compose.yml: pgbouncer dockerfile missing")
    env = env_file(compose_dir / pooler.get("env_file", "pgbouncer.env"))
    check(env.get("DB_HOST") == "postgres", "pgbouncer.env: DB_HOST should be the postgres service")
    check(env.get("POOL_MODE") == "transaction", "pgbouncer.env: POOL_MODE should be transaction")
    check(not any(k.startswith("PGBOUNCER_") for k in env), "pgbouncer.env: mixes PGBOUNCER_ keys into the edoburu style")
    port = env.get("LISTEN_PORT", "5432")
    check(f"{port}:{port}" in pooler.get("ports", []), f"docker-compose.yml: pgbouncer should publish {port}")
    check("9127:9127" in pooler.get("ports", []), "docker-compose.yml: pgbouncer should publish 9127")
    check(pooler.get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
          "docker-compose.yml: pgbouncer should wait for a healthy postgres")
    web = services.get("web", {})
    web_env = web.get("environment", {})
    check(web_env.get("DB_HOST") == "pgbouncer", "docker-compose.yml: web must connect to pgbouncer")
    check(str(web_env.get("DB_PORT")) == port, f"docker-compose.yml: web DB_PORT should be {port}")
    check(web_env.get("DB_NAME") == env.get("DB_NAME"), "docker-compose.yml: web DB_NAME differs from the pooler's")
    check(web_env.get("DB_USER") == env.get("DB_USER"), "docker-compose.yml: web DB_USER differs from the pooler's")
    check(web_env.get("DB_PASSWORD") == env.get("DB_PASSWORD"), "docker-compose.yml: web DB_PASSWORD differs")
    check((compose_dir / web.get("build", "")).joinpath("Dockerfile").is_file(), "docker-compose.yml: web Dockerfile missing")
    prometheus = services.get("prometheus", {})
    check(prometheus.get("profiles") == ["monitoring"], "docker-compose.yml: prometheus should be optional (profile)")
    for volume in prometheus.get("volumes", []):
        source = volume.split(":")[0]
        check((compose_dir / source).is_file(), f"docker-compose.yml: volume source {source} missing")
    pg_env = services.get("postgres", {}).get("environment", {})
    check(pg_env.get("POSTGRES_USER") == env.get("DB_USER"), "docker-compose.yml: postgres user differs from DB_USER")
    check(pg_env.get("POSTGRES_DB") == env.get("DB_NAME"), "docker-compose.yml: postgres database differs from DB_NAME")
    print(f"compose: {len(services)} services, pooler env {len(env)} variables")


def check_django_settings():
    app = DEPLOY / "docker/django-app"
    saved = dict(os.environ)
    try:
        for key in list(os.environ):
            if key.startswith("DB_"):
                del os.environ[key]
        settings = runpy.run_path(str(app / "demo/settings.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    db = settings["DATABASES"]["default"]
    check(db["HOST"] == "pgbouncer" and db["PORT"] == "6432", "settings.py: default database is not the pooler")
    check(db["DISABLE_SERVER_SIDE_CURSORS"] is True, "settings.py: DISABLE_SERVER_SIDE_CURSORS must be True")
    check(db["CONN_MAX_AGE"] == 0, "settings.py: CONN_MAX_AGE should default to 0")
    print("django: settings point at the pooler, server-side cursors off, CONN_MAX_AGE 0")


def glob_regex(pattern):
    """A .dockerignore pattern as a regex: `*` and `?` stay within one path segment,
    `**/` spans any number of directories."""
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignore_included(rules, path):
    """Whether the build context keeps `path`: the last matching rule wins, and a rule
    that matches a directory matches everything below it, as docker does."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    keep = True
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            keep = negate
    return keep


def build_context():
    """The files of the image's build context, after .dockerignore."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), glob_regex(line.lstrip("!"))))
    files = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = Path(dirpath).relative_to(ROOT).as_posix()
        dirnames[:] = [d for d in dirnames if d not in (".git", "target", "fuzz")]
        for name in filenames:
            path = name if rel_dir == "." else f"{rel_dir}/{name}"
            if dockerignore_included(rules, path):
                files.append(path)
    return files


def check_dockerfile(context_out):
    text = (DEPLOY / "docker/Dockerfile").read_text()
    lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
    final = lines[max(i for i, l in enumerate(lines) if l.startswith("FROM ")):]
    check(any(re.fullmatch(r"USER 10001(:10001)?", l) for l in final), "Dockerfile: the runtime stage should run as user 10001")
    check("EXPOSE 6432 9127" in final, "Dockerfile: EXPOSE 6432 9127")
    check("STOPSIGNAL SIGINT" in final, "Dockerfile: STOPSIGNAL SIGINT (safe shutdown)")
    check(any(l.startswith("HEALTHCHECK") and "healthcheck" in l for l in final), "Dockerfile: HEALTHCHECK with the healthcheck script")
    check(any(l.startswith("ENTRYPOINT") and "docker-entrypoint.sh" in l for l in final), "Dockerfile: ENTRYPOINT")
    check(any("cargo build --release" in l and "-p pgbouncer-rs" in l for l in lines), "Dockerfile: builds -p pgbouncer-rs")
    context = set(build_context())
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            sources = [w for w in line.split()[1:-1] if not w.startswith("--")]
            for source in sources:
                if source == ".":
                    continue
                check(source in context, f"Dockerfile: COPY {source} is not in the build context")
    for needed in ("Cargo.toml", "Cargo.lock", "crates/daemon/src/main.rs", "xtask/Cargo.toml"):
        check(needed in context, f".dockerignore: {needed} left out of the build context")
    check(not any(p.startswith(("target/", "fuzz/", ".git/")) for p in context), ".dockerignore: build output or corpora in the context")
    # The context as a directory, for `cargo metadata --locked` in deploy-check.sh.
    if context_out:
        out = Path(context_out)
        for path in context:
            dest = out / path
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, dest)
    print(f"dockerfile: runtime stage checked, build context {len(context)} files")


# --- Kubernetes ---------------------------------------------------------------------------


def ini_values(text):
    parser = configparser.ConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=None, interpolation=None)
    parser.read_string(text)
    return parser


def check_kubernetes():
    k8s = DEPLOY / "kubernetes"
    objects = {}
    for path in sorted(k8s.glob("*.yaml")):
        for doc in load_yaml(path):
            objects.setdefault(doc["kind"], []).append((path, doc))
    kustomization = objects.pop("Kustomization", [])
    listed = set(kustomization[0][1].get("resources", [])) if kustomization else set()
    files = {p.name for kind in objects.values() for p, _ in kind}
    check(listed == files, f"kustomization.yaml: resources {sorted(listed)} != files {sorted(files)}")

    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
        skip("kubernetes schemas", "python package kubernetes-validate not installed (.ci/install installs it)")
    builtin = [(p, d) for kind, items in objects.items() if kind != "ServiceMonitor" for p, d in items]
    if kubernetes_validate:
        for version in K8S_VERSIONS:
            version = version or kubernetes_validate.latest_version()
            for path, doc in builtin:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(f"{path.name}: {doc['kind']} invalid for Kubernetes {version}: {e.message} at {'.'.join(map(str, e.path))}")
                except Exception as e:  # schema missing for that version, and the like
                    problems.append(f"{path.name}: {doc['kind']} not validated for {version}: {e}")
        print(f"kubernetes: {len(builtin)} objects validated (strict) against {', '.join(v or 'latest' for v in K8S_VERSIONS)}")

    monitors = [d for _, d in objects.get("ServiceMonitor", [])]
    node_modules = None
    if shutil.which("node") and shutil.which("npm"):
        root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True).stdout.strip()
        if (Path(root) / "@kubernetes-models/prometheus-operator/package.json").is_file():
            node_modules = root
    if node_modules:
        run = subprocess.run(
            ["node", str(ROOT / "xtask/deploy-check-servicemonitor.mjs"), node_modules],
            input=json.dumps(monitors), capture_output=True, text=True,
        )
        print(run.stdout.strip())
        check(run.returncode == 0, f"servicemonitor.yaml: schema check failed: {run.stdout.strip()} {run.stderr.strip()}")
    else:
        skip("ServiceMonitor schema", "node or npm -g @kubernetes-models/prometheus-operator missing (.ci/install installs it)")

    (_, deployment), = objects["Deployment"]
    (_, service), = objects["Service"]
    (_, pdb), = objects["PodDisruptionBudget"]
    (_, configmap), = objects["ConfigMap"]
    (_, secret), = objects["Secret"]
    pod = deployment["spec"]["template"]
    pod_labels = pod["metadata"]["labels"]
    matches = lambda selector: all(pod_labels.get(k) == v for k, v in selector.items())
    check(matches(deployment["spec"]["selector"]["matchLabels"]), "deployment.yaml: selector does not match the pod labels")
    check(matches(service["spec"]["selector"]), "service.yaml: selector does not match the pods")
    check(matches(pdb["spec"]["selector"]["matchLabels"]), "pdb.yaml: selector does not match the pods")
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for port in service["spec"]["ports"]:
        check(port["targetPort"] in ports, f"service.yaml: targetPort {port['targetPort']} is not a container port")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container.get(probe, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") == "metrics", f"deployment.yaml: {probe} should GET {path} on metrics")
    pre_stop = " ".join(container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
    check("kill -INT 1" in pre_stop, "deployment.yaml: preStop should send SIGINT (safe shutdown)")
    check(pod["spec"].get("terminationGracePeriodSeconds", 30) >= 60, "deployment.yaml: terminationGracePeriodSeconds < 60")
    security = container.get("securityContext", {})
    check(security.get("readOnlyRootFilesystem") is True, "deployment.yaml: readOnlyRootFilesystem")
    check(security.get("allowPrivilegeEscalation") is False, "deployment.yaml: allowPrivilegeEscalation")
    check(security.get("capabilities", {}).get("drop") == ["ALL"], "deployment.yaml: capabilities drop ALL")
    check(pod["spec"].get("securityContext", {}).get("runAsNonRoot") is True, "deployment.yaml: runAsNonRoot")
    resources = container.get("resources", {})
    check(resources.get("requests") and resources.get("limits", {}).get("memory"), "deployment.yaml: requests and a memory limit")

    # The mounted files: pgbouncer.ini from the ConfigMap, userlist.txt from the Secret.
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "config"]
    mounted = {}
    for source in volume["projected"]["sources"]:
        kind, ref = next(iter(source.items()))
        obj = configmap if kind == "configMap" else secret
        check(ref["name"] == obj["metadata"]["name"], f"deployment.yaml: {kind} {ref['name']} not defined here")
        data = obj.get("data", {}) | obj.get("stringData", {})
        for item in ref["items"]:
            check(item["key"] in data, f"deployment.yaml: {kind} has no key {item['key']}")
            mounted[f"{mount['mountPath']}/{item['path']}"] = item["key"]
    check(container.get("args") == [f"{mount['mountPath']}/pgbouncer.ini"], "deployment.yaml: args should name the mounted pgbouncer.ini")
    ini = ini_values(configmap["data"]["pgbouncer.ini"])["pgbouncer"]
    check(ini.get("auth_file") in mounted, f"configmap.yaml: auth_file {ini.get('auth_file')} is not a mounted file")
    check(int(ini.get("listen_port", "6432")) == ports.get("postgres"), "configmap.yaml: listen_port != container port postgres")
    check(int(ini.get("metrics_listen_port", "0")) == ports.get("metrics"), "configmap.yaml: metrics_listen_port != container port metrics")
    check(ini.get("metrics_listen_addr") == "0.0.0.0", "configmap.yaml: metrics must listen on the pod address for probes")

    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        check(all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()), "servicemonitor.yaml: selector does not match the Service")
        names = {p["name"] for p in service["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            check(endpoint.get("port") in names, f"servicemonitor.yaml: port {endpoint.get('port')} is not a Service port")
            check(endpoint.get("path", "/metrics") == "/metrics", "servicemonitor.yaml: path should be /metrics")
    print("kubernetes: selectors, ports, probes, preStop, security context and mounts agree")


# --- systemd ------------------------------------------------------------------------------


def unit(path):
    """A systemd unit as {section: {key: [values]}} (keys may repeat)."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def check_systemd():
    service = unit(DEPLOY / "systemd/pgbouncer-rs.service")
    socket = unit(DEPLOY / "systemd/pgbouncer-rs.socket")
    s = service.get("Service", {})
    want = {
        "Type": ["notify"],
        "KillSignal": ["SIGINT"],
        "User": ["postgres"],
        "NoNewPrivileges": ["yes"],
        "ProtectSystem": ["strict"],
    }
    for key, value in want.items():
        check(s.get(key) == value, f"pgbouncer-rs.service: {key}={s.get(key)}, want {value}")
    check("/bin/kill -HUP $MAINPID" in s.get("ExecReload", []), "pgbouncer-rs.service: ExecReload must send SIGHUP")
    check(s.get("ExecStart", [""])[0].startswith("/usr/bin/pgbouncer-rs "), "pgbouncer-rs.service: ExecStart")
    check(re.fullmatch(r"\d+s?", s.get("TimeoutStopSec", [""])[0]), "pgbouncer-rs.service: TimeoutStopSec")
    check(int(s.get("LimitNOFILE", ["0"])[0]) >= 4096, "pgbouncer-rs.service: LimitNOFILE")
    listen = socket.get("Socket", {}).get("ListenStream", [])
    check("6432" in listen, "pgbouncer-rs.socket: ListenStream=6432")
    check("/run/postgresql/.s.PGSQL.6432" in listen, "pgbouncer-rs.socket: the Unix socket")
    check(socket.get("Install", {}).get("WantedBy") == ["sockets.target"], "pgbouncer-rs.socket: WantedBy=sockets.target")
    print("systemd: service and socket have the expected settings")


def main():
    context_out = sys.argv[1] if len(sys.argv) > 1 else None
    for step in (check_yaml_parses, check_alert_rules, check_compose, check_django_settings,
                 lambda: check_dockerfile(context_out), check_kubernetes, check_systemd):
        try:
            step()
        except Exception as e:  # a file shaped unlike the checks expect
            problems.append(f"{getattr(step, '__name__', 'check')}: {type(e).__name__}: {e}")
    if CI and skips:
        problems.extend(f"skipped under CI: {s}" for s in skips)
    for problem in problems:
        print(f"FAIL: {problem}")
    print(f"deploy_check.py: {len(problems)} problem(s), {len(skips)} skipped")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
