"""Load benchmark: complete GBC flows against both apps under gunicorn, and a /healthz ceiling.

Starts the demo site and the PCE sandbox exactly as production does
(``.venv/bin/gunicorn -c config/gunicorn.conf.py app:site`` and ``app:sandbox``, the default
gthread workers and threads) on loopback ports, with a temporary instance folder. Then, with the
same client processes and the same number of concurrent virtual users for both numbers:

1. the ceiling: ``GET /healthz`` (no I/O), half of the users on each app, for ``--ceiling-seconds``;
2. the flows: each virtual user runs complete flows, one after the other, until ``--seconds``
   have passed or ``--max-flows`` have been done. One flow is what a visitor clicks:

   ==============  ==============================================================================
   home            GET  site /                     the connect form (its CSRF token)
   connect         POST site /connect              303 to the sandbox's /oauth/authorize
   authorize       GET  sandbox /oauth/authorize   the pre-filled lookup finds the customer: 303
   verify_page     GET  sandbox /authorize/verify  the page shows the test passcode
   passcode        POST sandbox /authorize/verify  303 to the consent page
   consent_page    GET  sandbox /authorize/consent
   consent         POST sandbox /authorize/consent "Authorize": redirect to the site's /callback
   callback        GET  site /callback             the site exchanges the code for tokens and reads
                                                   the ESPI API (Authorization, UsagePoints, local time)
   run_page        GET  site /runs/<id>            the run page, which must say "Authorized"
   ==============  ==============================================================================

   The users alternate the residential (1 meter) and commercial (4 meters) test customers and the
   four lookup types (account, phone, email, address), pre-filled from the connect form.

Reported: flows/s, client requests per flow, server requests per flow (from the gunicorn access
logs: the client's plus the site's calls to the sandbox), p50/p95/p99/max latency per step, and
errors (any status other than the expected one, any exception, a page without what it must show).
The fraction compared with the targets is flows/s x client requests per flow / ceiling req/s.

Differences from a default production start, all printed with the results: the sandbox's rate
limits are raised far above what one load generator sends (every request comes from 127.0.0.1;
the limiter still runs and counts), and ``sandbox_ready_delay`` is 0 so that the data is
"collected" at once and the callback reads it (with the default 5 s the callback would record a
202 and the run page would poll).

The client is cheap on purpose (the machine's cores are shared with the servers): http.client
keep-alive connections, one per user and app, a dict for cookies, regular expressions for the few
form fields needed, several processes (``--processes``) of threads.

    .venv/bin/python benchmarks/load.py [--seconds 120] [--users 8] [--processes 2] [--json]
    .venv/bin/python benchmarks/load.py --database "$(cat /tmp/storage-pg-url)" --redis redis://127.0.0.1:6379/0
"""
from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html import unescape
from pathlib import Path
from urllib.parse import urlencode, urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"

STEPS = ("home", "connect", "authorize", "verify_page", "passcode", "consent_page", "consent", "callback",
         "run_page")
CUSTOMERS = (
    ("residential", {"account": "111111111-1", "phone": "111-111-1111",
                     "email": "uapi-test-residential@example.com",
                     "address": "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087"}),
    ("commercial", {"account": "222222222-2", "phone": "222-222-2222",
                    "email": "uapi-test-commercial@example.com",
                    "address": "333 W EL CAMINO REAL STE 700, SUNNYVALE CA 94087"}),
)
LOOKUPS = ("phone", "email", "account", "address")
RAISED_LIMIT = "1000000 per minute"
REQUEST_TIMEOUT = 30.0


# ---- a small keep-alive HTTP client ---------------------------------------------------------------

class Failure(Exception):
    """A step did not answer what a visitor would get."""


class Browser:
    """One virtual user: a keep-alive connection per origin and a cookie jar per origin."""

    def __init__(self) -> None:
        self.conns: dict[str, http.client.HTTPConnection] = {}
        self.cookies: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()

    def request(self, method: str, url: str, form: list | None = None) -> tuple[int, dict, str]:
        parts = urlsplit(url)
        netloc = parts.netloc
        path = parts.path + ("?" + parts.query if parts.query else "")
        headers = {"Host": netloc, "Accept": "text/html", "User-Agent": "gbc-load"}
        jar = self.cookies.setdefault(netloc, {})
        if jar:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        body = None
        if form is not None:
            body = urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            conn = self.conns.get(netloc)
            if conn is None:
                host, port = netloc.rsplit(":", 1)
                conn = self.conns[netloc] = http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # the server closed an idle keep-alive connection: the request was not served; retry once
                conn.close()
                del self.conns[netloc]
                if attempt == 2:
                    raise
                continue
            break
        for line in resp.headers.get_all("Set-Cookie") or ():
            pair = line.split(";", 1)[0]
            name, _, value = pair.partition("=")
            if value and "max-age=0" not in line.lower():
                jar[name.strip()] = value.strip()
            else:
                jar.pop(name.strip(), None)
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            self.conns.pop(netloc, None)
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data.decode("utf-8", "replace")


_FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.S | re.I)
_ATTR = re.compile(r"""([\w-]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
_INPUT = re.compile(r"<input\b([^>]*)>", re.I)
_SELECT = re.compile(r"<select\b([^>]*)>(.*?)</select>", re.S | re.I)
_OPTION = re.compile(r"<option\b([^>]*)>", re.I)
_PASSCODE = re.compile(r'id="test-passcode"[^>]*>\s*([0-9]+)\s*<')


def _attrs(text: str) -> dict:
    return {m.group(1).lower(): unescape(m.group(2) or m.group(3) or m.group(4) or "") for m in _ATTR.finditer(text)}


def form_fields(html: str, action_end: str) -> list[tuple[str, str]]:
    """The fields a browser would send from the form whose action ends with ``action_end`` (hidden and
    text inputs, checked boxes, each select's selected or first option; no submit buttons)."""
    for match in _FORM.finditer(html):
        if not _attrs(match.group(1)).get("action", "").split("?")[0].endswith(action_end):
            continue
        fields = []
        for tag in _INPUT.finditer(match.group(2)):
            a = _attrs(tag.group(1))
            kind = a.get("type", "text").lower()
            if "name" not in a or "disabled" in a or kind in ("submit", "button", "image", "reset"):
                continue
            if kind in ("checkbox", "radio") and "checked" not in a:
                continue
            fields.append((a["name"], a.get("value", "on" if kind in ("checkbox", "radio") else "")))
        for sel in _SELECT.finditer(match.group(2)):
            a = _attrs(sel.group(1))
            options = [_attrs(o.group(1)) for o in _OPTION.finditer(sel.group(2))]
            chosen = [o for o in options if "selected" in o] or options[:1]
            if "name" in a and chosen:
                fields.append((a["name"], chosen[0].get("value", "")))
        return fields
    raise Failure(f"no form posting to {action_end}")


# ---- one virtual user -----------------------------------------------------------------------------

def _expect(step: str, got: int, want: tuple[int, ...], body: str) -> None:
    if got not in want:
        first = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))[:160]
        raise Failure(f"{step}: HTTP {got}, expected {'/'.join(map(str, want))}: {first}")


def one_flow(browser: Browser, site: str, n: int, timings: list, think: float = 0.0,
             rng: random.Random | None = None) -> None:
    """One complete flow; appends (step, seconds) to ``timings``; raises on the first wrong answer.
    With ``think``, the visitor pauses before each step but the first (uniformly 0.5-1.5 x
    ``think`` seconds, not timed), as people reading a page do."""
    scenario, ids = CUSTOMERS[n % 2]
    lookup = LOOKUPS[(n // 2) % len(LOOKUPS)]
    first = [True]

    def call(step, method, url, form=None, want=(200,)):
        if think and not first[0]:
            time.sleep(think * (0.5 + (rng or random).random()))
        first[0] = False
        start = time.perf_counter()
        try:
            status, headers, body = browser.request(method, url, form)
        except Exception as exc:
            raise Failure(f"{step}: {type(exc).__name__}: {exc}") from exc
        timings.append((step, time.perf_counter() - start))
        _expect(step, status, want, body)
        return status, headers, body

    def follow(step, url, headers):
        location = headers.get("location", "")
        if not location:
            raise Failure(f"{step}: a redirect without Location")
        return urljoin(url, location)

    _, _, body = call("home", "GET", site + "/")
    chosen = ("lookup_type", "lookup_value", "function_blocks")
    form = [(k, v) for k, v in form_fields(body, "/connect") if k not in chosen]
    form += [("lookup_type", lookup), ("lookup_value", ids[lookup])]
    form += [("function_blocks", b) for b in ("4", "16", "51")]
    _, headers, _ = call("connect", "POST", site + "/connect", form, want=(303,))
    authorize = follow("connect", site + "/connect", headers)
    _, headers, _ = call("authorize", "GET", authorize, want=(302, 303))
    verify = follow("authorize", authorize, headers)
    if not urlsplit(verify).path.endswith("/authorize/verify"):
        raise Failure(f"authorize: the pre-filled lookup did not find the customer ({urlsplit(verify).path})")
    _, _, body = call("verify_page", "GET", verify)
    code = _PASSCODE.search(body)
    if code is None:
        raise Failure("verify_page: no test passcode shown")
    form = [(k, v) for k, v in form_fields(body, "/authorize/verify") if k != "code"] + [("code", code.group(1))]
    _, headers, _ = call("passcode", "POST", verify, form, want=(302, 303))
    consent = follow("passcode", verify, headers)
    _, _, body = call("consent_page", "GET", consent)
    form = form_fields(body, "/authorize/consent") + [("authorize", "Authorize")]
    _, headers, _ = call("consent", "POST", consent, form, want=(302, 303))
    callback = follow("consent", consent, headers)
    if "/callback" not in callback or "code=" not in callback:
        raise Failure(f"consent: not sent back to the site with a code ({urlsplit(callback).path})")
    _, headers, _ = call("callback", "GET", callback, want=(302, 303))
    run_url = follow("callback", callback, headers)
    _, _, body = call("run_page", "GET", run_url)
    if "Authorized" not in body:
        raise Failure(f"run_page: the run is not authorized ({scenario}, {lookup})")


def _user(role: str, site: str, sandbox: str, deadline: float, budget: dict, user: int, out: dict,
          think: float = 0.0) -> None:
    browser = Browser()
    rng = random.Random(user)
    timings: list = []
    errors: list = []
    done = 0
    n = user
    try:
        if role == "ceiling":
            url = (site if user % 2 == 0 else sandbox) + "/healthz"
            while time.monotonic() < deadline:
                start = time.perf_counter()
                try:
                    status, _, body = browser.request("GET", url)
                    timings.append(("healthz", time.perf_counter() - start))
                    _expect("healthz", status, (200,), body)
                    done += 1
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    browser.close()
            return
        if think:
            # people don't all click at the same moment: each user starts somewhere within one
            # flow's worth of pauses (9 steps) of the others
            time.sleep(rng.uniform(0, 9 * think))
        while time.monotonic() < deadline:
            with budget["lock"]:
                if budget["left"] <= 0:
                    break
                budget["left"] -= 1
            flow_timings: list = []
            try:
                one_flow(browser, site, n, flow_timings, think, rng)
                done += 1
            except Exception as exc:
                errors.append(str(exc) if isinstance(exc, Failure) else f"{type(exc).__name__}: {exc}")
                browser.close()
                browser.cookies.clear()
            timings.extend(flow_timings)
            n += 7   # the next customer and lookup type
    finally:
        browser.close()
        with out["lock"]:
            out["timings"].extend(timings)
            out["errors"].extend(errors)
            out["done"] += done


def client_process(role: str, site: str, sandbox: str, users: range, start_at: float, seconds: float,
                   max_count: int, queue, think: float = 0.0) -> None:
    """A client process: one thread per virtual user, all starting at ``start_at`` (time.time())."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out = {"lock": threading.Lock(), "timings": [], "errors": [], "done": 0}
    budget = {"lock": threading.Lock(), "left": max_count}
    time.sleep(max(0.0, start_at - time.time()))
    began = time.monotonic()
    deadline = began + seconds
    threads = [threading.Thread(target=_user, args=(role, site, sandbox, deadline, budget, u, out, think),
                                daemon=True)
               for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    queue.put({"timings": out["timings"], "errors": out["errors"], "done": out["done"],
               "elapsed": time.monotonic() - began, "cpu": time.process_time()})


def run_clients(role: str, site: str, sandbox: str, users: int, processes: int, seconds: float,
                max_count: int, think: float = 0.0) -> dict:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    start_at = time.time() + 0.5
    procs = []
    for p in range(processes):
        mine = range(p, users, processes)
        share = max_count // processes + (1 if p < max_count % processes else 0)
        procs.append(ctx.Process(target=client_process,
                                 args=(role, site, sandbox, mine, start_at, seconds, share, queue, think)))
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=seconds + (REQUEST_TIMEOUT + 1.5 * think) * 12 + 60) for _ in procs]
    for proc in procs:
        proc.join()
    merged = {"timings": [], "errors": [], "done": 0, "elapsed": max(r["elapsed"] for r in results),
              "client_cpu": sum(r["cpu"] for r in results)}
    for r in results:
        merged["timings"].extend(r["timings"])
        merged["errors"].extend(r["errors"])
        merged["done"] += r["done"]
    return merged


# ---- statistics ----------------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def step_table(timings: list) -> dict:
    by_step: dict[str, list[float]] = {}
    for step, seconds in timings:
        by_step.setdefault(step, []).append(seconds * 1000)
    table = {}
    for step in (*STEPS, "healthz"):
        values = sorted(by_step.get(step, []))
        if values:
            table[step] = {"count": len(values), "mean_ms": sum(values) / len(values),
                           "p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95),
                           "p99_ms": percentile(values, 99), "max_ms": values[-1]}
    return table


# ---- servers -------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_schemas(url: str) -> tuple[str, str, list[str]]:
    """Two new schemas in the PostgreSQL database at ``url`` (one per app): their URLs and names."""
    import sqlalchemy as sa

    names = [f"gbc_load_{app}_{secrets.token_hex(4)}" for app in ("site", "sandbox")]
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    finally:
        engine.dispose()
    urls = [sa.make_url(url).update_query_dict({"options": f"-csearch_path={name}"}).render_as_string(
        hide_password=False) for name in names]
    return urls[0], urls[1], names


def drop_schemas(url: str, names: list[str]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


def server_env(instance: Path, site_port: int, sandbox_port: int, args, db_urls: tuple[str, str] | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GBC_")}
    env.update({
        "GBC_INSTANCE_PATH": str(instance),
        "GBC_SITE_PORT": str(site_port),
        "GBC_SANDBOX_PORT": str(sandbox_port),
        "GBC_SECRET_KEY": secrets.token_urlsafe(32),
        "GBC_SANDBOX_READY_DELAY": "0",
        "GBC_RATELIMIT_OTP": RAISED_LIMIT,
        "GBC_RATELIMIT_LOOKUP": RAISED_LIMIT,
        "GBC_RATELIMIT_AUTHORIZE": RAISED_LIMIT,
        "GBC_RATELIMIT_SIGNIN": RAISED_LIMIT,
    })
    if db_urls:
        env["GBC_DATABASE_URL"], env["GBC_SANDBOX_DATABASE_URL"] = db_urls
    if args.redis:
        env["GBC_RATELIMIT_STORAGE_URL"] = args.redis
    if args.workers:
        env["GBC_WORKERS"] = str(args.workers)
    if args.threads:
        env["GBC_THREADS"] = str(args.threads)
    return env


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server for {url} exited ({proc.returncode}); see its log")
        try:
            conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url}/readyz did not answer 200 within {seconds:.0f} s")


def access_counts(path: Path) -> dict:
    """Lines of a gunicorn access log (stdout) by kind: healthz, readyz, other, and 5xx answers."""
    counts = {"healthz": 0, "readyz": 0, "other": 0, "5xx": 0}
    line_re = re.compile(r'"(?P<m>[A-Z]+) (?P<p>\S+)" (?P<s>\d{3}) ')
    for line in path.read_text(errors="replace").splitlines():
        m = line_re.search(line)
        if not m:
            continue
        kind = m.group("p").strip("/")
        counts[kind if kind in ("healthz", "readyz") else "other"] += 1
        if m.group("s").startswith("5"):
            counts["5xx"] += 1
    return counts


def server_cpu(master: int) -> float:
    """CPU seconds (user + system) used so far by a gunicorn master's live workers and the master."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [master]
    try:
        for task in Path(f"/proc/{master}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
    except OSError:
        pass
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def machine() -> dict:
    info = {"nproc": os.cpu_count(), "python": platform.python_version()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        info["load_before"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    return info


# ---- main ----------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=120, help="length of the flow load (default 120)")
    ap.add_argument("--ceiling-seconds", type=float, default=30, help="length of the /healthz ceiling (default 30)")
    ap.add_argument("--users", type=int, default=8, help="concurrent virtual users, for both loads (default 8)")
    ap.add_argument("--processes", type=int, default=2, help="client processes sharing the users (default 2)")
    ap.add_argument("--max-flows", type=int, default=100_000, help="stop after this many flows (default 100000)")
    ap.add_argument("--warmup", type=int, default=1, help="flows per user before measuring (default 1)")
    ap.add_argument("--database", default="sqlite",
                    help="sqlite (default: files in the temporary instance folder) or a postgresql+psycopg URL: "
                         "each app gets a new schema there, dropped at the end")
    ap.add_argument("--redis", default="", help="a redis:// URL for the rate-limit counters (default memory://)")
    ap.add_argument("--think", type=float, default=0.0, metavar="SECONDS",
                    help="mean pause of each user before each step but the first, like people reading a page "
                         "(default 0: back to back, the machine saturated; with pauses the load is below "
                         "capacity and the fraction is the offered load, not the capacity)")
    ap.add_argument("--workers", type=int, default=0,
                    help="gunicorn workers per app (default: the configured workers, GBC_WORKERS's default)")
    ap.add_argument("--threads", type=int, default=0,
                    help="threads per worker (default: the configured threads, GBC_THREADS's default)")
    ap.add_argument("--wsgi-module", default="app",
                    help="the module gunicorn serves site and sandbox from (default app; e.g. a profiling wrapper "
                         "on PYTHONPATH)")
    ap.add_argument("--wait-idle", type=float, metavar="LOAD", default=0,
                    help="first wait (up to 30 minutes) until the 1-minute load average is below LOAD, e.g. 0.5")
    ap.add_argument("--keep", action="store_true", help="keep the instance folder and the server logs")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if not GUNICORN.exists():
        raise SystemExit(f"{GUNICORN} not found: run python3 dev.py start once to make the venv")
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print

    sys.path.insert(0, str(ROOT))
    from demo.config import load_config

    if args.wait_idle:
        give_up = time.monotonic() + 1800
        while float(Path("/proc/loadavg").read_text().split()[0]) >= args.wait_idle:
            if time.monotonic() > give_up:
                raise SystemExit(f"the 1-minute load average stayed at or above {args.wait_idle} for 30 minutes")
            time.sleep(5)
    host = machine()   # the load average before anything starts
    instance = Path(tempfile.mkdtemp(prefix="gbc-load-"))
    site_port, sandbox_port = free_port(), free_port()
    schemas: list[str] = []
    db_urls = None
    if args.database != "sqlite":
        try:
            site_db, sandbox_db, schemas = pg_schemas(args.database)
        except Exception as exc:   # the driver's message names host and user, never the password
            shutil.rmtree(instance, ignore_errors=True)
            raise SystemExit(f"PostgreSQL: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}") from None
        db_urls = (site_db, sandbox_db)
    env = server_env(instance, site_port, sandbox_port, args, db_urls)
    settings = load_config({}, env={k: v for k, v in env.items() if k.startswith("GBC_")})
    site, sandbox = settings["site_url"], settings["sandbox_url"]
    procs: dict[str, subprocess.Popen] = {}
    logs = {}
    try:
        for role in ("sandbox", "site"):
            logs[role] = (instance / f"{role}.access.log", instance / f"{role}.error.log")
            procs[role] = subprocess.Popen(
                [str(GUNICORN), "-c", "config/gunicorn.conf.py", f"{args.wsgi_module}:{role}"], cwd=ROOT, env=env,
                stdout=logs[role][0].open("wb"), stderr=logs[role][1].open("wb"), start_new_session=True)
        wait_ready(sandbox, procs["sandbox"])
        wait_ready(site, procs["site"])
        log(f"servers: site {site}, sandbox {sandbox}; gunicorn gthread {settings['workers']} workers x "
            f"{settings['threads']} threads each; database {args.database.split(':')[0]}; "
            f"rate limits {settings['ratelimit_storage_url'].split(':')[0]}")

        log(f"ceiling: GET /healthz, {args.users} users in {args.processes} processes, {args.ceiling_seconds:.0f} s")
        ceiling_cpu = sum(server_cpu(proc.pid) for proc in procs.values())
        ceiling = run_clients("ceiling", site, sandbox, args.users, args.processes, args.ceiling_seconds, 10**9)
        ceiling_cpu = sum(server_cpu(proc.pid) for proc in procs.values()) - ceiling_cpu
        if args.warmup:
            log(f"warm-up: {args.warmup} flow(s) per user")
            warm = run_clients("flows", site, sandbox, args.users, args.processes, 120 + 15 * args.think,
                               args.warmup * args.users)
        else:
            warm = {"done": 0, "errors": []}
        server_before = {role: access_counts(logs[role][0]) for role in procs}
        cpu_before = {role: server_cpu(proc.pid) for role, proc in procs.items()}
        log(f"flows: {args.users} users in {args.processes} processes, {args.seconds:.0f} s or {args.max_flows} flows")
        flows = run_clients("flows", site, sandbox, args.users, args.processes, args.seconds, args.max_flows,
                            args.think)
        cpu_after = {role: server_cpu(proc.pid) for role, proc in procs.items()}
        time.sleep(0.5)   # the last access lines
        server_after = {role: access_counts(logs[role][0]) for role in procs}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        if schemas:
            drop_schemas(args.database, schemas)

    ceiling_rps = ceiling["done"] / ceiling["elapsed"]
    flows_per_s = flows["done"] / flows["elapsed"]
    steps = step_table(flows["timings"])
    client_rpf = len(STEPS)
    server_requests = sum(server_after[r]["other"] - server_before[r]["other"] for r in procs)
    attempted = flows["done"] + len(flows["errors"])
    server_rpf = server_requests / attempted if attempted else float("nan")
    fraction = flows_per_s * client_rpf / ceiling_rps if ceiling_rps else float("nan")
    # the same with every request the servers answered in a flow (the site's token and ESPI calls
    # to the sandbox are requests of the flow too: its "token" and "data" steps)
    fraction_server = flows_per_s * server_rpf / ceiling_rps if ceiling_rps else float("nan")
    server_5xx = sum(server_after[r]["5xx"] for r in procs)
    worst_p99 = max((s["p99_ms"] for s in steps.values()), default=float("nan"))
    errors = flows["errors"] + ceiling["errors"]
    result = {
        "machine": host,
        "settings": {"workers": settings["workers"], "threads": settings["threads"], "users": args.users,
                     "client_processes": args.processes, "seconds": args.seconds, "think_s": args.think,
                     "ceiling_seconds": args.ceiling_seconds, "database": args.database.split(":")[0],
                     "ratelimit_storage": settings["ratelimit_storage_url"].split(":")[0],
                     "changed_from_defaults": {"ratelimit_otp/lookup/authorize/signin": RAISED_LIMIT,
                                               "sandbox_ready_delay": 0}},
        "ceiling": {"requests": ceiling["done"], "seconds": round(ceiling["elapsed"], 2),
                    "requests_per_s": round(ceiling_rps, 1), "latency": step_table(ceiling["timings"]).get("healthz"),
                    "errors": len(ceiling["errors"]), "client_cpu_s": round(ceiling["client_cpu"], 1),
                    "cpu_ms_per_request": {"servers": round(ceiling_cpu * 1000 / max(ceiling["done"], 1), 3),
                                           "client": round(ceiling["client_cpu"] * 1000 / max(ceiling["done"], 1), 3)}},
        "flows": {"completed": flows["done"], "warmup_flows": warm["done"], "seconds": round(flows["elapsed"], 2),
                  "flows_per_s": round(flows_per_s, 2), "client_requests_per_flow": client_rpf,
                  "server_requests_per_flow": round(server_rpf, 2),
                  "client_requests_per_s": round(flows_per_s * client_rpf, 1),
                  "client_cpu_s": round(flows["client_cpu"], 1),
                  "cpu_ms_per_flow": {role: round((cpu_after[role] - cpu_before[role]) * 1000 / attempted, 1)
                                      for role in procs} | {"client": round(flows["client_cpu"] * 1000 / attempted, 1)}
                  if attempted else {},
                  "steps": steps,
                  "errors": len(flows["errors"]), "server_5xx": server_5xx,
                  "error_samples": sorted(set(errors))[:10], "warmup_errors": len(warm["errors"])},
        "fraction_of_ceiling": round(fraction, 3),
        "fraction_of_ceiling_server_requests": round(fraction_server, 3),
        "targets": {"fraction_at_least_0.25": fraction >= 0.25, "p99_per_step_under_100ms": worst_p99 < 100,
                    "zero_errors": not errors and not warm["errors"] and server_5xx == 0,
                    "two_minutes": flows["elapsed"] >= 120},
    }
    if args.keep:
        result["instance"] = str(instance)
    else:
        shutil.rmtree(instance, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(report(result))
    return 0 if all(result["targets"].values()) else 1


def report(r: dict) -> str:
    f, c = r["flows"], r["ceiling"]
    lines = [
        f"machine: {r['machine'].get('cpu', '?')}, {r['machine']['nproc']} CPUs, {r['machine'].get('ram_gb', '?')} GB; "
        f"load before {' '.join(r['machine'].get('load_before', []))}",
        f"servers: gunicorn gthread, {r['settings']['workers']} workers x {r['settings']['threads']} threads per app; "
        f"database {r['settings']['database']}; rate limits {r['settings']['ratelimit_storage']}",
        f"changed from defaults: rate limits raised to {RAISED_LIMIT} (one client IP), sandbox_ready_delay 0",
        f"client: {r['settings']['users']} users in {r['settings']['client_processes']} processes"
        + (f", pausing {r['settings']['think_s']} s on average before each step" if r['settings']['think_s'] else ""),
        "",
        f"ceiling  GET /healthz: {c['requests']} requests in {c['seconds']} s = {c['requests_per_s']} req/s, "
        f"p50 {c['latency']['p50_ms']:.1f} ms, p99 {c['latency']['p99_ms']:.1f} ms, errors {c['errors']}, "
        f"CPU per request: servers {c['cpu_ms_per_request']['servers']} ms, "
        f"client {c['cpu_ms_per_request']['client']} ms",
        f"flows: {f['completed']} complete flows in {f['seconds']} s = {f['flows_per_s']} flows/s "
        f"(after {f['warmup_flows']} warm-up flows); {f['client_requests_per_flow']} client requests per flow "
        f"= {f['client_requests_per_s']} req/s; {f['server_requests_per_flow']} server requests per flow "
        f"(with the site's calls to the sandbox); client CPU {f['client_cpu_s']} s",
        "CPU per flow: " + ", ".join(f"{k} {v} ms" for k, v in f["cpu_ms_per_flow"].items()),
        "",
        f"{'step':<14}{'count':>8}{'mean':>9}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  (ms)",
    ]
    for step, s in f["steps"].items():
        lines.append(f"{step:<14}{s['count']:>8}{s['mean_ms']:>9.1f}{s['p50_ms']:>9.1f}{s['p95_ms']:>9.1f}"
                     f"{s['p99_ms']:>9.1f}{s['max_ms']:>9.1f}")
    lines += [
        "",
        f"errors: {f['errors']} in flows, {c['errors']} in the ceiling, {f['warmup_errors']} in warm-up, "
        f"{f['server_5xx']} 5xx in the servers' access logs",
    ]
    lines += [f"  {e}" for e in f["error_samples"]]
    t = r["targets"]
    lines += [
        f"fraction of the ceiling: {r['fraction_of_ceiling']:.1%} (target >= 25 %): "
        f"{'met' if t['fraction_at_least_0.25'] else 'NOT met'}",
        f"  counting every server request of a flow ({f['server_requests_per_flow']}, the site's token and ESPI "
        f"calls too): {r['fraction_of_ceiling_server_requests']:.1%}",
        f"p99 per step < 100 ms: {'met' if t['p99_per_step_under_100ms'] else 'NOT met'}",
        f"0 errors: {'met' if t['zero_errors'] else 'NOT met'}; "
        f"over 2 minutes: {'yes' if t['two_minutes'] else 'no (shorter run)'}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
