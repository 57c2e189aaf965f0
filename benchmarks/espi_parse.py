"""Benchmark: reading a big Green Button feed with demo.espi.reader, a bare lxml loop and greenbutton-objects.

Generates the sandbox's commercial customer's ``Batch/Subscription`` (4 meters,
15-minute data, the solar meter with a second flow direction) with
``demo.espi.stream.batch_feed`` straight from ``demo.sandbox.meterdata`` (no
server, no database) for 3 months and 2 years of history, writes both to a
temporary folder, then reads each file with every parser **in a fresh
subprocess** and reports seconds (best of ``--rounds``), MB/s, readings/s and
the subprocess's peak RSS (``VmHWM``; also its RSS after imports, before
reading, so what the parse itself added shows). Every parser must report the
same number of readings (and, where it gives raw values, the same sum).

Parsers:

* ``bare-iterparse``: the loop an integrator writes first: ``etree.iterparse``
  on IntervalReading end events, ``findtext`` start and value, clear the
  element and its finished siblings (lxml FAQ), with the same safe options.
* ``bare-xpath``: the fastest bare loop we know (stack notes §3.4): iterparse
  on Atom entry end events, two compiled ``smart_strings=False`` XPaths per
  entry for every start and value, clear. A ceiling, not what people write.
* ``iter_interval_readings``: ``demo.espi.reader.iter_interval_readings``: one
  tuple per reading, with usage point and meter reading ids and the duration.
* ``read_usage``: ``demo.espi.reader.read_usage``: everything (meters,
  series in ``array('q')`` columns with their ReadingType, bills).
* ``greenbutton-objects``: ``greenbutton_objects.parse.parse_feed`` (the PyPI
  package, ``pip install -e '.[bench]'``); skipped when it is not installed.
  It builds the whole tree and an object per reading, so by default it reads
  only the 3-month feed and its 2-year figure is extrapolated per reading
  (``--gbo-full`` runs it on the 2-year feed too).

    .venv/bin/python benchmarks/espi_parse.py [--rounds 3] [--gbo-full] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAY = 86400
PARSERS = ("bare-iterparse", "bare-xpath", "iter_interval_readings", "read_usage", "greenbutton-objects")
ATOM = "{http://www.w3.org/2005/Atom}"
ESPI = "{http://naesb.org/espi}"
SAFE = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False}


# ---------------------------------------------------------------- the feeds


def write_feed(path: Path, history_days: int, now: int) -> tuple[int, int]:
    """The commercial customer's Batch/Subscription with ``history_days`` of data, as the sandbox
    streams it; returns (bytes, IntervalReadings)."""
    from demo.espi import stream
    from demo.lookup import CustomerDirectory
    from demo.sandbox import meterdata, resources

    customer = CustomerDirectory.from_file(ROOT / "config" / "pce-customers.toml").scenario("commercial")
    meters = tuple(resources.ServedMeter(f"190900{i}", m, meterdata.profile(customer, m),
                                         resources.meter_resource(f"190900{i}", m))
                   for i, m in enumerate(customer.meters, 1))
    served = resources.Served(
        uid="424242", client_id="PCE_ccccccccc", scope="FB=1_3_4_5_13_16_51", status=1,
        created=datetime.fromtimestamp(now, UTC), account_number=customer.account_number, customer=customer,
        meters=meters, window=meterdata.data_window(now - history_days * DAY, now), intervals=True)
    base = resources.resource_base("http://127.0.0.1:5001")
    size = readings = 0
    marker, tail = b"<IntervalReading>", b""
    with path.open("wb") as fh:
        for chunk in stream.batch_feed(base, "Batch/Subscription/424242", resources.subscription_data(served),
                                       updated=datetime.fromtimestamp(now, UTC)):
            fh.write(chunk)
            size += len(chunk)
            data = tail + chunk
            readings += data.count(marker)
            tail = data[-(len(marker) - 1):]
    return size, readings


# ---------------------------------------------------------------- the parsers (run in a child process)


def bare_iterparse(path: str) -> tuple[int, int | None]:
    from lxml import etree

    count = total = 0
    start_path, value_path = f"{ESPI}timePeriod/{ESPI}start", f"{ESPI}value"
    for _, el in etree.iterparse(path, events=("end",), tag=ESPI + "IntervalReading", **SAFE):
        int(el.findtext(start_path))
        total += int(el.findtext(value_path))
        count += 1
        el.clear()
        while el.getprevious() is not None:
            del el.getparent()[0]
    return count, total


def bare_xpath(path: str) -> tuple[int, int | None]:
    from lxml import etree

    ns = {"e": ESPI[1:-1]}
    starts = etree.XPath("a:content/e:IntervalBlock/e:IntervalReading/e:timePeriod/e:start/text()",
                         namespaces={**ns, "a": ATOM[1:-1]}, smart_strings=False)
    values = etree.XPath("a:content/e:IntervalBlock/e:IntervalReading/e:value/text()",
                         namespaces={**ns, "a": ATOM[1:-1]}, smart_strings=False)
    count = total = 0
    for _, entry in etree.iterparse(path, events=("end",), tag=ATOM + "entry", **SAFE):
        got = list(map(int, starts(entry)))
        total += sum(map(int, values(entry)))
        count += len(got)
        entry.clear()
        while entry.getprevious() is not None:
            del entry.getparent()[0]
    return count, total


def ours_iter(path: str) -> tuple[int, int | None]:
    from demo.espi.reader import iter_interval_readings

    count = total = 0
    with open(path, "rb") as fh:
        for _point, _reading, _start, _duration, value in iter_interval_readings(fh):
            count += 1
            total += value
    return count, total


def ours_read_usage(path: str) -> tuple[int, int | None]:
    from demo.espi.reader import read_usage

    with open(path, "rb") as fh:
        usage = read_usage(fh)
    return sum(len(s) for s in usage.series), sum(sum(s.values) for s in usage.series)


def greenbutton_objects(path: str) -> tuple[int, int | None]:
    from greenbutton_objects import parse

    points = parse.parse_feed(path)
    return sum(1 for up in points for mr in up.meterReadings for _ in mr.intervalReadings), None


RUNNERS = {"bare-iterparse": bare_iterparse, "bare-xpath": bare_xpath, "iter_interval_readings": ours_iter,
           "read_usage": ours_read_usage, "greenbutton-objects": greenbutton_objects}


def _rss_kb() -> tuple[int, int]:
    """(VmHWM, VmRSS) of this process, kB."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(rest.split()[0])
    return values["VmHWM"], values["VmRSS"]


def child(parser: str, path: str) -> None:
    """One parser reads one file once, in this fresh process: prints a JSON line."""
    if parser == "greenbutton-objects":
        import greenbutton_objects.parse  # noqa: F401
    else:
        import lxml.etree  # noqa: F401

        import demo.espi.reader  # noqa: F401
    _, before = _rss_kb()
    wall, cpu = time.perf_counter(), time.process_time()
    readings, total = RUNNERS[parser](path)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak, _ = _rss_kb()
    print(json.dumps({"wall": wall, "cpu": cpu, "readings": readings, "total": total, "rss_before_kb": before,
                      "peak_kb": peak}))


def run_child(parser: str, path: Path) -> dict | None:
    proc = subprocess.run([sys.executable, __file__, "--child", parser, str(path)],
                          capture_output=True, text=True, cwd=ROOT, timeout=3600)
    if proc.returncode != 0:
        print(f"  {parser} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else '?'}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds over every parser and feed, each read in a fresh process; the best counts (3)")
    ap.add_argument("--gbo-full", action="store_true", help="also run greenbutton-objects on the 2-year feed")
    ap.add_argument("--keep", metavar="DIR", help="write the feeds here and keep them")
    ap.add_argument("--child", nargs=2, metavar=("PARSER", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0

    try:
        import greenbutton_objects  # noqa: F401
        have_gbo = True
    except ImportError:
        have_gbo = False
        print("greenbutton-objects is not installed (pip install -e '.[bench]'): skipped")

    with tempfile.TemporaryDirectory(prefix="gbc-espi-bench-") as tmp:
        folder = Path(args.keep or tmp)
        folder.mkdir(parents=True, exist_ok=True)
        now = int(time.time()) // DAY * DAY
        feeds = []
        for label, days in (("3 months", 92), ("2 years", 730)):
            path = folder / f"commercial-{days}d.xml"
            t0 = time.perf_counter()
            size, readings = write_feed(path, days, now)
            print(f"{label}: {path.name} {size / 1e6:.1f} MB, {readings:,} IntervalReadings "
                  f"(generated in {time.perf_counter() - t0:.1f} s)")
            feeds.append((label, path, size, readings))

        # Rounds interleave the parsers, so a busy moment on a shared machine does not hit one
        # parser only; each (parser, feed) keeps its best wall and CPU time and its highest peak.
        rows: dict[tuple[str, str], dict] = {}
        for round_ in range(args.rounds):
            for parser in PARSERS:
                if parser == "greenbutton-objects" and (not have_gbo or round_ > 0):
                    continue            # minutes per read: once is enough
                for label, path, _size, readings in feeds:
                    if parser == "greenbutton-objects" and label == "2 years" and not args.gbo_full:
                        continue
                    got = run_child(parser, path)
                    if got is None:
                        continue
                    if got["readings"] != readings:
                        print(f"  {parser} on {label}: {got['readings']:,} readings, expected {readings:,}")
                    old = rows.get((parser, label))
                    if old is not None:
                        got["wall"], got["cpu"] = min(got["wall"], old["wall"]), min(got["cpu"], old["cpu"])
                        got["peak_kb"] = max(got["peak_kb"], old["peak_kb"])
                    rows[(parser, label)] = got
            print(f"round {round_ + 1} of {args.rounds} done")

        totals = {(p, lab): r["total"] for (p, lab), r in rows.items() if r["total"] is not None}
        for label, *_ in feeds:
            sums = {t for (p, lab), t in totals.items() if lab == label}
            if len(sums) > 1:
                print(f"  value sums differ on the {label} feed: {sums}")

        print()
        print(f"{'parser':<24} {'feed':<9} {'readings':>9} {'wall s':>7} {'CPU s':>7} {'MB/s':>6} "
              f"{'readings/s':>11} {'RSS before MB':>13} {'peak RSS MB':>11}")
        for parser in PARSERS:
            for label, _path, size, _readings in feeds:
                r = rows.get((parser, label))
                if r is None:
                    continue
                print(f"{parser:<24} {label:<9} {r['readings']:>9,} {r['wall']:>7.3f} {r['cpu']:>7.3f} "
                      f"{size / 1e6 / r['cpu']:>6.1f} {r['readings'] / r['cpu']:>11,.0f} "
                      f"{r['rss_before_kb'] / 1024:>13.1f} {r['peak_kb'] / 1024:>11.1f}")
        print("(MB/s and readings/s from CPU time: steadier than wall time on a shared machine, and the same "
              "when it is idle)")

        print()
        long_label = feeds[-1][0]

        def rate(parser: str, label: str) -> float | None:
            r = rows.get((parser, label))
            return None if r is None else r["readings"] / r["cpu"]

        for ours in ("iter_interval_readings", "read_usage"):
            for label, *_ in feeds:
                mine = rate(ours, label)
                for other in ("bare-iterparse", "bare-xpath"):
                    theirs = rate(other, label)
                    if mine and theirs:
                        print(f"{ours} / {other} ({label}): {mine / theirs:.2f}x readings/s")
        gbo = rate("greenbutton-objects", long_label) or rate("greenbutton-objects", feeds[0][0])
        if gbo:
            basis = "2 years" if rate("greenbutton-objects", long_label) else "3 months, per reading"
            for ours in ("iter_interval_readings", "read_usage"):
                mine = rate(ours, long_label)
                if mine:
                    print(f"{ours} / greenbutton-objects ({long_label} vs its {basis}): {mine / gbo:.1f}x readings/s")
            if not rate("greenbutton-objects", long_label):
                print(f"greenbutton-objects on {long_label}, extrapolated: "
                      f"{feeds[-1][3] / gbo:.1f} s at its 3-month rate")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
