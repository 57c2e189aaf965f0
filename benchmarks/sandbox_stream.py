"""Benchmark: stream a commercial customer's Batch/Subscription from the sandbox over HTTP.

Starts the sandbox custodian in its own process on loopback (the project's
threaded werkzeug server, as ``gbc-demo`` runs it, or ``--gunicorn``), creates
commercial authorizations (4 meters, one with solar export on a second flow)
directly in its database with 3 months and 2 years of history, then downloads
``Batch/Subscription/{uid}`` with an access token and reports throughput,
size, readings and the server's peak RSS (``VmHWM``) after each feed, so a flat
memory profile shows as (almost) the same peak for 3 months and 2 years.

    .venv/bin/python benchmarks/sandbox_stream.py [--runs 2] [--gunicorn]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

CLIENT_ID = "PCE_ccccccccc"
DAY = 86400


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_for(instance: Path, port: int) -> dict:
    from demo.config import load_config

    return load_config({"instance_path": str(instance), "sandbox_port": port, "secret_key": "benchmark",
                        "sandbox_ready_delay": 0, "sandbox_webhooks": False, "log_level": "WARNING"}, env={})


def serve(instance: str, port: int) -> None:
    """The server process: the sandbox app on the project's threaded werkzeug server."""
    import logging

    from demo.cli import serve as make_server
    from demo.sandbox import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", port, create_app(settings_for(Path(instance), port)))
    print("ready", flush=True)
    server.serve_forever()


def create_authorization(settings: dict, history_days: int) -> tuple[str, str]:
    """A commercial authorization with ``history_days`` of history, its meters and an access
    token, written straight into the sandbox database (what the consent step would store)."""
    from demo.sandbox import create_app, lifecycle
    from demo.sandbox.models import AuthorizationRow, TokenRow
    from demo.storage import utcnow
    from demo.tokens import digest, new_token

    app = create_app(settings)
    ctx = app.extensions["gbc_sandbox"]
    customer = ctx.directory.scenario("commercial")
    token = new_token()
    now = int(time.time())
    with ctx.db.session() as s:
        row = AuthorizationRow(
            uid=lifecycle.numeric_uid(s, AuthorizationRow), client_id=CLIENT_ID, scenario="commercial",
            account_number=customer.account_number, customer_email=customer.email, status=1,
            requested_scope="FB=4_16_51", scope=f"FB=1_3_4_5_13_16_51;HistoryLength={history_days * DAY}",
            meter_uids=[], history_start=now - history_days * DAY, authorized_start=now, authorized_end=0,
        )
        s.add(row)
        s.flush()
        lifecycle.authorized(s, row, [m.uid for m in customer.meters], settings)
        s.add(TokenRow(access_hash=digest(token), token_class="access", client_id=CLIENT_ID,
                       authorization_uid=row.uid, scope=row.scope, expires=utcnow() + timedelta(hours=2)))
        uid = row.uid
    return uid, token


def peak_rss_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) of a process, in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0])
    return values.get("VmHWM", 0), values.get("VmRSS", 0)


def worker_pid(pid: int) -> int:
    """gunicorn serves from a worker child; werkzeug from the process itself."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        kids = children.read_text().split()
        if kids:
            return int(kids[0])
    return pid


def stream(url: str, token: str) -> tuple[int, int, float]:
    """Download ``url``: (bytes, IntervalReadings, seconds). Counts readings on the fly."""
    marker = b"<IntervalReading>"
    size = readings = 0
    tail = b""
    start = time.perf_counter()
    with requests.get(url, headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=120) as resp:
        resp.raise_for_status()
        for chunk in resp.iter_content(1 << 20):
            size += len(chunk)
            data = tail + chunk
            readings += data.count(marker)
            tail = data[-(len(marker) - 1):]
    return size, readings, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="downloads of each feed (default 2)")
    parser.add_argument("--gunicorn", action="store_true", help="serve with gunicorn (gthread) instead of werkzeug")
    parser.add_argument("--serve", nargs=2, metavar=("INSTANCE", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]))
        return 0

    with tempfile.TemporaryDirectory(prefix="gbc-bench-") as tmp:
        instance, port = Path(tmp), free_port()
        settings = settings_for(instance, port)
        feeds = [("3 months", *create_authorization(settings, 92)), ("2 years", *create_authorization(settings, 730))]
        if args.gunicorn:
            env = {**os.environ, "GBC_INSTANCE_PATH": str(instance), "GBC_SANDBOX_PORT": str(port),
                   "GBC_SECRET_KEY": "benchmark", "GBC_SANDBOX_READY_DELAY": "0", "GBC_SANDBOX_WEBHOOKS": "false",
                   "GBC_SITE_PORT": str(free_port())}
            cmd = [sys.executable, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", "4",
                   "-b", f"127.0.0.1:{port}", "--log-level", "warning", "app:sandbox"]
            server = subprocess.Popen(cmd, cwd=ROOT, env=env)
        else:
            server = subprocess.Popen([sys.executable, __file__, "--serve", str(instance), str(port)],
                                      cwd=ROOT, stdout=subprocess.PIPE, text=True)
        try:
            base = settings["sandbox_url"] + "/DataCustodian/espi/1_1/resource"
            deadline = time.time() + 30
            while True:
                try:
                    requests.get(base + "/ReadServiceStatus", timeout=2)
                    break
                except requests.ConnectionError:
                    if time.time() > deadline or server.poll() is not None:
                        raise SystemExit("the sandbox did not start") from None
                    time.sleep(0.2)
            pid = worker_pid(server.pid)
            print(f"sandbox pid {pid} ({'gunicorn gthread' if args.gunicorn else 'werkzeug threaded'}) on {base}")
            print(f"idle: peak RSS {peak_rss_kb(pid)[0] / 1024:.1f} MB")
            print(f"{'feed':<10} {'run':>3} {'MB':>7} {'readings':>9} {'seconds':>8} {'MB/s':>7} "
                  f"{'readings/s':>11} {'server peak RSS MB':>19}")
            for label, uid, token in feeds:
                for run in range(1, args.runs + 1):
                    size, readings, seconds = stream(f"{base}/Batch/Subscription/{uid}", token)
                    hwm, _ = peak_rss_kb(pid)
                    print(f"{label:<10} {run:>3} {size / 1e6:>7.1f} {readings:>9,} {seconds:>8.2f} "
                          f"{size / 1e6 / seconds:>7.1f} {readings / seconds:>11,.0f} {hwm / 1024:>19.1f}")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
