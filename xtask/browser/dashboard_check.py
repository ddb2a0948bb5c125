#!/usr/bin/env python3
"""Checks the pgbouncer-rs dashboard in headless Chromium against the admin console.

    dashboard_check.py URL HOST PORT USER SCREENSHOT [--password P] [--pool DB/USER] [--clients N]
    dashboard_check.py --probe

URL is the dashboard (http://127.0.0.1:<metrics_listen_port>/); HOST, PORT and USER reach
the admin console (dbname pgbouncer; the password comes from --password or PGPASSWORD).
Run it while exactly N clients (pgbench -c N) use the pool DB/USER and nothing else
connects. It checks that:

- the page renders each /api/snapshot it receives faithfully (every pool cell, the header
  totals, the login failures, the advice rows);
- the numbers agree with SHOW POOLS taken at the same moment as a fresh snapshot, with
  checks that hold while the numbers move: cl_active + cl_waiting is N on the page, in
  SHOW POOLS and in the snapshot; sv_active + sv_idle + sv_used never exceeds pool_size
  (+ reserve_pool_size); the server count and pool_mode agree;
- the four charts of the pool have drawn points, the advisor rows match SHOW ADVICE;
- a failing API shows the "connection lost" state, and the page recovers;
- a snapshot made from a real one with a raise and a lower verdict, a server login error
  and a login failure added is rendered with those marked (live load rarely has them);
- no console error, page error, failed or non-2xx request, or request to another origin.

It saves a full-page screenshot to SCREENSHOT. Exit status 0 when every check passed,
1 on a failed check, 3 when Playwright or psycopg cannot be imported. `--probe` checks
only that and that the browser starts (exit 0 or 3). Chromium: $CHROMIUM, else
/usr/bin/chromium (Debian's package), else Playwright's own download. Every wait is
bounded; the whole run is capped at 150 s.
"""

import argparse
import json
import os
import shutil
import signal
import sys
import time
import urllib.parse
import urllib.request

PREFIX = "dashboard_check:"
COUNT_FIELDS = ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login",
                "maxwait_us", "pool_size")
US_FIELDS = ("wait_p50_us", "wait_p95_us", "wait_p99_us",
             "query_p50_us", "query_p95_us", "query_p99_us")
CHARTS = ("clients", "servers", "xact", "latency")
GOOD_ROUNDS = 3


class Fail(Exception):
    """A check did not hold."""


STARTED = time.monotonic()


def say(msg):
    print(f"{PREFIX} [{time.monotonic() - STARTED:4.1f} s] {msg}", flush=True)


def browser_path():
    """The Chromium to drive, or None for Playwright's own download."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium",
                      "/usr/bin/chromium-browser", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch(pw):
    path = browser_path()
    args = ["--no-sandbox", "--disable-dev-shm-usage"]
    if path:
        return pw.chromium.launch(executable_path=path, args=args)
    return pw.chromium.launch(args=args)


def probe():
    """Exit 0 when Playwright can start a browser here, else 3 with the reason."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        say(f"playwright is not importable ({e}); pip install playwright")
        return 3
    try:
        import psycopg  # noqa: F401 (the console queries use it)
    except ImportError as e:
        say(f"psycopg is not importable ({e}); pip install 'psycopg[binary]'")
        return 3
    try:
        with sync_playwright() as pw:
            browser = launch(pw)
            version = browser.version
            browser.close()
    except Exception as e:  # any launch failure means "no usable browser"
        first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
        say(f"cannot start Chromium ({browser_path() or 'Playwright download'}): {first}")
        return 3
    say(f"browser ok: Chromium {version} at {browser_path() or 'Playwright download'}")
    return 0


# --- the sources of truth --------------------------------------------------------------

class Console:
    """The admin console over psycopg. The console speaks only the simple query protocol:
    a client-side cursor never prepares (psycopg's default one would, from the fifth
    execution on)."""

    def __init__(self, host, port, user, password):
        import psycopg
        self.conn = psycopg.connect(host=host, port=port, user=user, password=password,
                                    dbname="pgbouncer", autocommit=True, connect_timeout=10,
                                    cursor_factory=psycopg.ClientCursor, prepare_threshold=None)

    def show(self, what):
        cur = self.conn.execute(f"SHOW {what}")
        names = [d.name for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def pool(self, db, user):
        for row in self.show("POOLS"):
            if row["database"] == db and row["user"] == user:
                return row
        return None


def get_json(base, path):
    with urllib.request.urlopen(urllib.parse.urljoin(base, path), timeout=5) as r:
        return json.load(r)


def snap_pool(snap, db, user):
    for p in snap["pools"]:
        if p["database"] == db and p["user"] == user:
            return p
    return None


# --- the page --------------------------------------------------------------------------

READ_PAGE = """key => {
  const row = document.querySelector(`tr[data-pool="${CSS.escape(key)}"]`);
  const cells = {};
  if (row) for (const td of row.querySelectorAll("td[data-field]"))
    cells[td.dataset.field] = {value: td.dataset.value, text: td.textContent};
  const header = {};
  for (const el of document.querySelectorAll("header [data-field]"))
    header[el.dataset.field] = {value: el.dataset.value || null, text: el.textContent,
                                state: el.dataset.state || null};
  const rows = [...document.querySelectorAll("#pools tbody tr[data-pool]")].map(r => r.dataset.pool);
  const advice = [...document.querySelectorAll("tr[data-advice]")].map(r => ({
    key: r.dataset.advice, verdict: r.dataset.verdict, cls: r.className,
    current: r.querySelector("[data-field=current]").textContent,
    suggested: r.querySelector("[data-field=suggested]").textContent,
    reason: r.querySelector("[data-field=reason]").textContent}));
  const errors = {};
  for (const r of document.querySelectorAll("tr[data-error]"))
    errors[r.dataset.error] = r.querySelector("[data-field=count]").dataset.value;
  return {row: row ? cells : null, header, rows, advice, errors};
}"""

READ_CHARTS = """key => [...document.querySelectorAll("svg[data-chart]")]
  .filter(s => s.dataset.chart.startsWith(key + "/"))
  .map(s => ({chart: s.dataset.chart.slice(key.length + 1), points: +s.dataset.points,
              series: [...s.querySelectorAll("path[data-series]")].map(p => ({
                name: p.dataset.series, segments: (p.getAttribute("d").match(/[ML]/g) || []).length}))}))"""


def fmt_count(v):
    return f"{round(v):,}"


def check_render(view, snap, key):
    """The page shows exactly the snapshot it was given."""
    problems = []
    want_rows = [f"{p['database']}/{p['user']}" for p in snap["pools"]]
    if view["rows"] != want_rows:
        problems.append(f"pool rows {view['rows']} != snapshot pools {want_rows}")
    db, user = key.split("/", 1)
    p = snap_pool(snap, db, user)
    row = view["row"]
    if p is None or row is None:
        return problems + [f"pool {key} missing (page: {row is not None}, snapshot: {p is not None})"]
    for f in ("database", "user", "pool_mode") + COUNT_FIELDS + US_FIELDS:
        if row.get(f, {}).get("value") != str(p[f]):
            problems.append(f"{f}: page data-value {row.get(f)} != snapshot {p[f]}")
    for f in ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login"):
        if row[f]["text"] != fmt_count(p[f]):
            problems.append(f"{f}: page shows {row[f]['text']!r} for {p[f]}")
    for f in US_FIELDS + ("maxwait_us",):
        text = row[f]["text"]
        if not (text == "0" or text.endswith(" ms") or text.endswith(" s")):
            problems.append(f"{f}: {text!r} is not a duration")
    err = p["last_login_error"] or ""
    if row["last_login_error"]["text"] != err:
        problems.append(f"last_login_error: page {row['last_login_error']['text']!r} != {err!r}")
    t = snap["totals"]
    h = view["header"]
    for f in ("clients", "max_client_conn", "servers", "logins", "login_failures"):
        if h[f]["text"] != fmt_count(t[f]):
            problems.append(f"header {f}: {h[f]['text']!r} != {t[f]}")
    if h["updated"]["value"] != str(snap["time_ms"]):
        problems.append(f"updated {h['updated']} is not the snapshot's time {snap['time_ms']}")
    if h["version"]["text"] != snap["version"]:
        problems.append(f"version {h['version']['text']!r} != {snap['version']!r}")
    want_advice = [f"{a['database']}/{a['user']}/{a['setting']}" for a in snap["advice"]]
    if [a["key"] for a in view["advice"]] != want_advice:
        problems.append(f"advice rows {[a['key'] for a in view['advice']]} != {want_advice}")
    for a, shown in zip(snap["advice"], view["advice"]):
        if (shown["verdict"], shown["reason"], shown["current"], shown["suggested"]) != (
                a["verdict"], a["reason"], fmt_count(a["current"]), fmt_count(a["suggested"])):
            problems.append(f"advice {shown['key']}: page {shown} != {a}")
        if ("v-" + a["verdict"]) not in shown["cls"].split():
            problems.append(f"advice {shown['key']}: not highlighted as {a['verdict']}")
    want_errors = {e["reason"]: str(e["count"]) for e in snap["errors"]}
    if view["errors"] != want_errors:
        problems.append(f"login failures {view['errors']} != {want_errors}")
    return problems


def check_truth(view, show, fresh, key, clients):
    """Page (up to a second old), SHOW POOLS and a snapshot fetched right after it agree
    on what holds while the numbers move."""
    db, user = key.split("/", 1)
    problems = []
    row = view["row"]
    snap = snap_pool(fresh, db, user)
    if show is None or snap is None or row is None:
        return [f"pool {key} missing from SHOW POOLS ({show is not None}), the snapshot "
                f"({snap is not None}) or the page ({row is not None})"]
    page = {f: int(row[f]["value"]) for f in COUNT_FIELDS}
    limit = snap["pool_size"] + snap["reserve_pool_size"]
    for name, src in (("page", page), ("SHOW POOLS", show), ("snapshot", snap)):
        waiting = src["cl_active"] + src["cl_waiting"]
        if waiting != clients:
            problems.append(f"{name}: cl_active {src['cl_active']} + cl_waiting "
                            f"{src['cl_waiting']} = {waiting}, want {clients}")
        busy = src["sv_active"] + src["sv_idle"] + src["sv_used"]
        if busy > limit:
            problems.append(f"{name}: sv_active + sv_idle + sv_used = {busy} > {limit}")
    servers = {name: src["sv_active"] + src["sv_idle"] + src["sv_used"] + src["sv_login"]
               for name, src in (("page", page), ("SHOW POOLS", show), ("snapshot", snap))}
    if len(set(servers.values())) != 1:
        problems.append(f"server counts differ: {servers}")
    modes = {row["pool_mode"]["value"], show["pool_mode"], snap["pool_mode"]}
    if len(modes) != 1:
        problems.append(f"pool_mode differs: {modes}")
    if page["pool_size"] != snap["pool_size"]:
        problems.append(f"pool_size: page {page['pool_size']} != snapshot {snap['pool_size']}")
    if int(view["header"]["clients"]["text"].replace(",", "")) != clients:
        problems.append(f"header clients {view['header']['clients']['text']} != {clients}")
    return problems


def check_highlights(page, real, key):
    """Serves the page a snapshot made from a real one with what live load rarely shows
    (a raise and a lower verdict, a server login error, a login failure) and checks that
    it is rendered and marked."""
    snap = json.loads(json.dumps(real))
    db, user = key.split("/", 1)
    snap["time_ms"] += 1
    snap_pool(snap, db, user)["last_login_error"] = "password authentication failed <b>"
    snap["errors"] = snap["errors"] + [{"reason": "check: no such user", "count": 12345}]
    snap["advice"] = snap["advice"] + [
        {"database": db, "user": user, "setting": "check_raise", "current": 3, "suggested": 8,
         "verdict": "raise", "reason": "clients waited p95 25.0 ms for a server"},
        {"database": db, "user": user, "setting": "check_lower", "current": 40, "suggested": 6,
         "verdict": "lower", "reason": "at most 5 of 40 servers were busy at once"}]
    body = json.dumps(snap)
    page.route("**/api/snapshot", lambda route: route.fulfill(
        status=200, content_type="application/json", body=body))
    try:
        page.wait_for_function(
            "t => document.querySelector('header [data-field=updated]').dataset.value == t",
            arg=str(snap["time_ms"]), timeout=5_000)
        view = page.evaluate(READ_PAGE, key)
        problems = check_render(view, snap, key)
        marked = page.evaluate("""key => ({
          err: document.querySelector(`tr[data-pool="${CSS.escape(key)}"] td[data-field=last_login_error]`).className,
          raise: document.querySelector(`tr[data-advice="${CSS.escape(key)}/check_raise"]`).className,
          lower: document.querySelector(`tr[data-advice="${CSS.escape(key)}/check_lower"]`).className,
          bold: document.querySelectorAll("#pools b").length})""", key)
    finally:
        page.unroute("**/api/snapshot")
    if marked["err"] != "err":
        problems.append(f"the server login error cell has class {marked['err']!r}")
    if marked["raise"] != "v-raise" or marked["lower"] != "v-lower":
        problems.append(f"advice rows are marked {marked}")
    if marked["bold"]:
        problems.append("the login error's text was rendered as HTML")
    if problems:
        raise Fail("synthetic snapshot: " + "; ".join(problems))


def run(args):
    from playwright.sync_api import sync_playwright

    origin = "{0.scheme}://{0.netloc}".format(urllib.parse.urlsplit(args.url))
    db, user = args.pool.split("/", 1)
    console = Console(args.host, args.port, args.user, args.password)
    troubles = []  # console errors, page errors, failed or foreign requests
    allow_failures = [False]

    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.set_default_timeout(30_000)  # Chromium starts slowly on 2 busy cores

        def note(kind, text):
            if not allow_failures[0]:
                troubles.append(f"{kind}: {text}")

        page.on("console", lambda m: m.type == "error" and note("console error", m.text))
        page.on("pageerror", lambda e: troubles.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: note("request failed", f"{r.url} {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and note("HTTP error", f"{r.status} {r.url}"))
        page.on("request", lambda r: r.url.startswith(origin) or r.url.startswith("data:")
                or troubles.append(f"request to another origin: {r.url}"))

        say(f"Chromium {browser.version} at {browser_path() or 'Playwright download'}")
        page.goto(args.url)
        page.wait_for_selector(f'tr[data-pool="{args.pool}"] td[data-field=cl_active]')
        say(f"pools table shows {args.pool}")

        # Rendering and truth, over several page updates.
        good, problems = 0, []
        deadline = time.monotonic() + 40
        for attempt in range(30):
            if good >= GOOD_ROUNDS or time.monotonic() > deadline:
                break
            with page.expect_response(lambda r: r.url.endswith("/api/snapshot")) as resp:
                pass
            given = resp.value.json()
            page.wait_for_function(
                "t => document.querySelector('header [data-field=updated]').dataset.value == t",
                arg=str(given["time_ms"]), timeout=5_000)
            view = page.evaluate(READ_PAGE, args.pool)
            show = console.pool(db, user)
            fresh = get_json(args.url, "api/snapshot")
            round_problems = check_render(view, given, args.pool)
            # Snapshot taken the moment after the page read it: the page may have moved on
            # already, so a mismatch there is retried rather than failed at once.
            round_problems += check_truth(view, show, fresh, args.pool, args.clients)
            if round_problems:
                problems.append(f"round {attempt}: " + "; ".join(round_problems))
            else:
                good += 1
                r = view["row"]
                say(f"round {attempt}: page cl_active {r['cl_active']['value']} + cl_waiting "
                    f"{r['cl_waiting']['value']}, SHOW POOLS {show['cl_active']} + "
                    f"{show['cl_waiting']}, snapshot sums to {args.clients}; servers "
                    f"{r['sv_active']['value']} active / pool_size {r['pool_size']['value']}")
        if good < GOOD_ROUNDS:
            raise Fail(f"only {good} of {GOOD_ROUNDS} consistent rounds:\n  " + "\n  ".join(problems[-8:]))
        if problems:
            say(f"{len(problems)} round(s) retried: {problems[0]}")

        # Charts: every chart of the pool has drawn points, the throughput is non-zero.
        page.wait_for_function(
            """([key, n]) => { const s = [...document.querySelectorAll("svg[data-chart]")]
                 .filter(s => s.dataset.chart.startsWith(key + "/"));
               return s.length === 4 && s.every(x => +x.dataset.points >= n); }""",
            arg=[args.pool, 5], timeout=20_000)
        charts = page.evaluate(READ_CHARTS, args.pool)
        if sorted(c["chart"] for c in charts) != sorted(CHARTS):
            raise Fail(f"charts of {args.pool}: {charts}")
        for c in charts:
            for s in c["series"]:
                if s["segments"] < 2:
                    raise Fail(f"chart {c['chart']}: series {s['name']} has no line: {c}")
        history = get_json(args.url, "api/history")
        busy = [s for s in history["samples"] if s["pools"].get(args.pool, {}).get("xact_per_s", 0) > 0]
        if len(busy) < 3:
            raise Fail(f"history has {len(busy)} samples with transactions for {args.pool}")
        say("charts: " + ", ".join(f"{c['chart']} {c['points']} points" for c in charts)
            + f"; {len(busy)} samples with xact/s > 0")

        # Advisor: the rows SHOW ADVICE has.
        want = sorted(f"{a['database']}/{a['user']}/{a['setting']}" for a in console.show("ADVICE"))
        shown = sorted(page.eval_on_selector_all("tr[data-advice]", "rs => rs.map(r => r.dataset.advice)"))
        if not shown or shown != want:
            raise Fail(f"advisor rows {shown} != SHOW ADVICE {want}")
        say(f"advisor: {len(shown)} rows, as SHOW ADVICE")

        page.screenshot(path=args.screenshot, full_page=True)
        say(f"screenshot: {args.screenshot}")

        # Connection lost: the API fails, the page says so, then recovers.
        allow_failures[0] = True
        page.route("**/api/**", lambda route: route.abort())
        page.wait_for_selector("header [data-field=connection][data-state=lost]", timeout=6_000)
        if not page.is_visible("#lost"):
            raise Fail("connection lost, but no visible banner")
        say("connection lost state: " + page.inner_text("#lost"))
        page.unroute("**/api/**")
        page.wait_for_selector("header [data-field=connection][data-state=live]", timeout=6_000)
        page.wait_for_timeout(1_500)  # failures of requests aborted just before unroute
        allow_failures[0] = False
        page.wait_for_timeout(1_500)
        if page.is_visible("#lost"):
            raise Fail("the connection lost banner stayed after recovery")
        say("recovered: live again")

        check_highlights(page, given, args.pool)
        say("highlights: a raise verdict, a server login error and a login failure are marked")

        browser.close()
    if troubles:
        raise Fail("browser reported:\n  " + "\n  ".join(troubles[:10]))


def main():
    if "--probe" in sys.argv[1:]:
        return probe()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("user")
    ap.add_argument("screenshot")
    ap.add_argument("--password", default=os.environ.get("PGPASSWORD"))
    ap.add_argument("--pool", default="appdb/md5user", help="the pool under load, DB/USER")
    ap.add_argument("--clients", type=int, default=8, help="pgbench -c of the load")
    args = ap.parse_args()
    try:
        import playwright.sync_api  # noqa: F401
        import psycopg  # noqa: F401
    except ImportError as e:
        say(f"{e}: run with --probe for what is missing")
        return 3
    signal.signal(signal.SIGALRM, lambda *_: (say("FAIL: gave up after 150 s"), os._exit(1)))
    signal.alarm(150)
    try:
        run(args)
    except Fail as e:
        say(f"FAIL: {e}")
        return 1
    say("all checks passed")
    print(PREFIX, "ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
