"""Scale-out benchmark: two service processes on Redis and PostgreSQL.

Run it from anywhere with the project's interpreter::

    python benchmarks/scaleout.py

It starts a private ``redis-server``, creates a throwaway PostgreSQL database on
127.0.0.1:5432 (dropped at the end), runs two ``python -m jupyter_ydjango serve`` processes
on them, and measures with real Yjs clients (node, ``tests/js/driver.mjs``):

1. edit-to-receipt latency in one ``text:file`` room with 50 clients, spread over the two
   processes or all on one, while one writer types a character every 50 ms;
2. the typing rate the two processes sustain before the median latency doubles (a ramp);
3. PostgreSQL rows and bytes per 1,000 keystrokes, before and after compaction.

It prints plain-text tables and writes ``benchmarks/results/scaleout.json``. See
``benchmarks/README.md`` for what each column means. This is a measurement, not a test: it
asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "benchmarks"), str(ROOT)]

import benchlib  # noqa: E402
from benchlib import (  # noqa: E402
    CpuMeter,
    CpuTime,
    driver_receipts,
    ensure_node_modules,
    fmt_spread,
    interrupt_on_signals,
    node_version,
    percentile,
    proc_cpu,
    schedule_slip,
    self_cpu,
    spread,
    start_service,
    table,
    write_json,
)
from servers import migrate, server_env  # noqa: E402
from services import PgDatabase, RedisServer, postgres_user  # noqa: E402
from yclient import NodeDriver, YClient  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scaleout.json"


def progress(text: str) -> None:
    benchlib.progress("scaleout", text)


# --- processes and CPU ----------------------------------------------------------------------


class Service:
    """One ``serve`` process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.server = start_service(env, log)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.proc.pid

    def session(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/collaboration/session/{path}",
            data=json.dumps({"format": "text", "type": "file"}).encode(), method="PUT")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        self.server.stop()


# --- latency --------------------------------------------------------------------------------


@dataclass
class Room:
    services: list[Service]
    session: dict[str, Any]

    def url(self, index: int) -> str:
        return f"ws://127.0.0.1:{self.services[index].port}/api/collaboration/room"

    @property
    def name(self) -> str:
        s = self.session
        return f"{s['format']}:{s['type']}:{s['fileId']}"


def new_room(services: list[Service], root: Path, label: str) -> Room:
    name = f"{label}-{uuid.uuid4().hex[:8]}.txt"
    (root / name).write_text("", encoding="utf-8")
    return Room(services, services[0].session(name))


async def connect_all(driver: NodeDriver, room: Room, homes: Sequence[int]) -> list[YClient]:
    """Clients on ``room.services[home]`` for each home, ten at a time."""
    clients: list[YClient] = []
    for start in range(0, len(homes), 10):
        clients += await asyncio.gather(*(
            driver.connect(room.url(home), room.name, {"sessionId": room.session["sessionId"]},
                           timeout=60)
            for home in homes[start:start + 10]))
    return clients


def delays_of(sent: list[dict[str, Any]], watched: list[list[dict[str, Any]]],
              homes: Sequence[int], writer_home: int) -> dict[str, Any]:
    """Per (character, receiver): the receiver's first text change holding the character,
    minus the character's send time (one node clock)."""
    delays: list[float] = []
    by_home: dict[str, list[float]] = {}
    missing = 0
    for changes, home in zip(watched, homes, strict=True):
        label = "same process" if home == writer_home else "other process"
        for s, got in zip(sent, driver_receipts(sent, changes), strict=True):
            if got is None:
                missing += 1
                continue
            delay = got - s["t"]
            delays.append(delay)
            by_home.setdefault(label, []).append(delay)
    span_ms = sent[-1]["t"] - sent[0]["t"] if len(sent) > 1 else math.nan
    out: dict[str, Any] = {
        "samples": len(delays), "never_received": missing,
        "p50_ms": percentile(delays, 50) if delays else math.nan,
        "p99_ms": percentile(delays, 99) if delays else math.nan,
        "max_ms": max(delays) if delays else math.nan,
        "sent_per_s": (len(sent) - 1) / span_ms * 1000 if span_ms else math.nan,
        "by_process": {label: {"p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99),
                               "samples": len(v)} for label, v in sorted(by_home.items())},
    }
    return out


async def type_and_watch(writer: YClient, receivers: list[YClient], count: int,
                         interval_ms: float, total_length: int, wait_s: float
                         ) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    for r in receivers:
        await r.watch()
    sent = await writer.burst(count, interval_ms, timeout=count * interval_ms / 1000 + 60)
    await asyncio.gather(*(r.wait_text(length=total_length, timeout=wait_s) for r in receivers),
                         return_exceptions=True)
    watched = list(await asyncio.gather(*(r.watched() for r in receivers)))
    return sent, watched


async def latency_config(driver: NodeDriver, services: list[Service], root: Path,
                         homes: list[int], chars: int, interval_ms: float, meter: CpuMeter,
                         cpu: CpuTime) -> dict[str, Any]:
    """One writer (``homes[0]``) types ``chars`` characters; everyone else watches."""
    room = new_room(services, root, "latency")
    clients = await connect_all(driver, room, homes)
    try:
        await asyncio.sleep(1.0)  # the joins' awareness traffic settles
        with meter.window(cpu):
            sent, watched = await type_and_watch(clients[0], clients[1:], chars, interval_ms,
                                                 chars, wait_s=15)
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    slip = schedule_slip([s["t"] for s in sent], interval_ms)
    return {**delays_of(sent, watched, homes[1:], homes[0]), "writer_slip_max_ms": slip}


async def ramp(driver: NodeDriver, services: list[Service], root: Path, clients: int,
               rates: list[float], seconds: float, meter: CpuMeter) -> list[dict[str, Any]]:
    """Type at each rate in turn (same room, same clients) until the median delay is more
    than twice the lowest median of the rates before."""
    room = new_room(services, root, "ramp")
    homes = [i % len(services) for i in range(clients)]
    handles = await connect_all(driver, room, homes)
    steps: list[dict[str, Any]] = []
    total = 0
    try:
        await asyncio.sleep(1.0)
        best = math.inf
        for rate in rates:
            count = max(100, int(rate * seconds))
            interval = 1000 / rate
            progress(f"ramp: {rate:g} updates/s ({count} characters)")
            cpu = CpuTime()
            total += count
            with meter.window(cpu):
                sent, watched = await type_and_watch(handles[0], handles[1:], count, interval,
                                                     total, wait_s=20)
            step = {"target_per_s": rate, "chars": count, **delays_of(sent, watched, homes[1:],
                                                                      homes[0]),
                    "cpu": cpu.as_dict(digits=2, servers="services")}
            best = min(best, step["p50_ms"])
            step["p50_vs_best"] = step["p50_ms"] / best
            steps.append(step)
            await asyncio.sleep(0.5)
            if step["p50_vs_best"] > 2 or step["never_received"]:
                break
    finally:
        await asyncio.gather(*(c.close() for c in handles), return_exceptions=True)
    return steps


# --- storage --------------------------------------------------------------------------------


def storage_rows(db: PgDatabase, file_id: str) -> dict[str, dict[str, int]]:
    key = (uuid.UUID(file_id),)
    out = {}
    for table_name, column in (("update", "data"), ("snapshot", "state")):
        rows, size, stored = db.query(
            f"SELECT COUNT(*), COALESCE(SUM(LENGTH({column})), 0), "
            f"COALESCE(SUM(pg_column_size({column})), 0) FROM jupyter_ydjango_{table_name} "
            "WHERE document_id = %s", key)[0]
        out[table_name] = {"rows": int(rows), "bytes": int(size), "stored_bytes": int(stored)}
    if out["update"]["rows"]:
        out["update"]["updates"] = int(db.query(
            "SELECT SUM(count) FROM jupyter_ydjango_update WHERE document_id = %s", key)[0][0])
    return out


async def storage(driver: NodeDriver, services: list[Service], root: Path, db: PgDatabase,
                  keystrokes: int, interval_ms: float, meter: CpuMeter, cpu: CpuTime
                  ) -> dict[str, Any]:
    room = new_room(services, root, "storage")
    file_id = room.session["fileId"]
    (writer,) = await connect_all(driver, room, [0])
    with meter.window(cpu):
        await writer.burst(keystrokes, interval_ms,
                           timeout=keystrokes * interval_ms / 1000 + 60)
        await asyncio.sleep(1.0)  # > the 50 ms log batch
        before = storage_rows(db, file_id)
        await writer.close()
        # the room unloads after its unload delay, folding the log into one snapshot
        deadline = time.monotonic() + 60
        while True:
            after = storage_rows(db, file_id)
            if after["update"]["rows"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    return {"keystrokes": keystrokes, "interval_ms": interval_ms,
            "before": before, "after": after}


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="clients in the latency room")
    parser.add_argument("--chars", type=int, default=200, help="characters typed per config")
    parser.add_argument("--interval-ms", type=float, default=50, help="typing interval")
    parser.add_argument("--runs", type=int, default=2, help="runs per latency config")
    parser.add_argument("--ramp-clients", type=int, default=50,
                        help="clients in the ramp room (writer included)")
    parser.add_argument("--ramp-rates", default="20,50,100,150,200,300,400,800,1600",
                        help="updates/s, comma-separated, in order")
    parser.add_argument("--ramp-seconds", type=float, default=3.0, help="seconds per rate")
    parser.add_argument("--keystrokes", type=int, default=1000, help="for the storage table")
    parser.add_argument("--storage-interval-ms", type=float, default=50)
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, tmp: Path, started: list[Any]) -> dict[str, Any]:
    user, why = postgres_user()
    if user is None:
        raise SystemExit(f"needs PostgreSQL: {why}")
    if shutil.which("redis-server") is None:
        raise SystemExit("needs redis-server (a private Redis is started on a free port)")
    ensure_node_modules()
    progress("starting Redis, a PostgreSQL database and two services")
    db = PgDatabase(user, "ydjango_bench")
    started.append(db)
    redis = RedisServer(tmp / "redis")
    started.append(redis)
    root = tmp / "root"
    root.mkdir()
    env = server_env(tmp / "data", **{
        "YDJANGO_DATABASE_URL": db.url(), "YDJANGO_REDIS_URL": redis.url,
        "YDJANGO_NOTEBOOK_DIR": str(root), "YDJANGO_ALLOW_ANONYMOUS": "1",
        "YDJANGO_LOG_LEVEL": "WARNING", "YDJANGO_ROOM_UNLOAD_DELAY": "2",
        # the storage table measures the log before compaction, then after the unload
        "YDJANGO_COMPACT_AFTER": "1000000", "YDJANGO_COMPACT_IDLE": "600",
    })
    (tmp / "data").mkdir()
    migrate(env)
    services = [Service(env, tmp / f"service{i}.log") for i in range(2)]
    started.extend(services)
    driver = NodeDriver(default_timeout=120)
    await driver.start()
    started.append(driver)
    meter = CpuMeter(lambda: driver.proc.pid if driver.proc else None,
                     lambda: [s.pid for s in services if s.server.proc.poll() is None])
    results: dict[str, Any] = {"latency": [], "cpu": {}}

    n = args.clients
    configs = [("2 processes, clients alternating", [i % 2 for i in range(n)]),
               ("1 process, every client", [0] * n)]
    for label, homes in configs:
        cpu = CpuTime()
        runs = []
        for k in range(args.runs):
            progress(f"latency: {label} ({n} clients), run {k + 1}/{args.runs}")
            runs.append(await latency_config(driver, services, root, homes, args.chars,
                                             args.interval_ms, meter, cpu))
        summary = {key: spread([r[key] for r in runs])
                   for key in ("p50_ms", "p99_ms", "max_ms", "never_received",
                               "writer_slip_max_ms")}
        by_process = {label_: {key: spread([r["by_process"][label_][key] for r in runs])
                               for key in ("p50_ms", "p99_ms")}
                      for label_ in runs[0]["by_process"]}
        results["latency"].append({"config": label, "clients": n, "runs": runs,
                                   "summary": summary, "summary_by_process": by_process,
                                   "samples_per_run": runs[0]["samples"]})
        results["cpu"][f"latency: {label}"] = cpu.as_dict(digits=2, servers="services")

    rates = [float(r) for r in args.ramp_rates.split(",") if r.strip()]
    results["ramp"] = await ramp(driver, services, root, args.ramp_clients, rates,
                                 args.ramp_seconds, meter)
    ramp_cpu = CpuTime()
    for step in results["ramp"]:
        for key, value in step["cpu"].items():
            attr = {"wall_s": "wall", "bench_cpu_s": "bench", "node_cpu_s": "node",
                    "services_cpu_s": "servers"}[key]
            setattr(ramp_cpu, attr, getattr(ramp_cpu, attr) + value)
    results["cpu"]["ramp (typing windows)"] = ramp_cpu.as_dict(digits=2,
                                                                 servers="services")

    progress(f"storage: {args.keystrokes} keystrokes, one every {args.storage_interval_ms:g} ms")
    cpu = CpuTime()
    results["storage"] = await storage(driver, services, root, db, args.keystrokes,
                                       args.storage_interval_ms, meter, cpu)
    results["cpu"]["storage"] = cpu.as_dict(digits=2, servers="services")
    results["cpu_totals"] = {"node_cpu_s": round(proc_cpu(driver.proc.pid), 2),
                             "services_cpu_s": round(sum(proc_cpu(s.pid) for s in services), 2)}
    return results


def report(args: argparse.Namespace, results: dict[str, Any], wall: float) -> None:
    rows = []
    for e in results["latency"]:
        sm = e["summary"]
        rows.append((e["config"], fmt_spread(sm["p50_ms"]), fmt_spread(sm["p99_ms"]),
                     fmt_spread(sm["max_ms"]), fmt_spread(sm["never_received"], 0),
                     e["samples_per_run"], fmt_spread(sm["writer_slip_max_ms"])))
        if len(e["summary_by_process"]) > 1:
            for label, s in e["summary_by_process"].items():
                rows.append((f"  receivers in the {label}", fmt_spread(s["p50_ms"]),
                             fmt_spread(s["p99_ms"]), "", "", "", ""))
    print(table(
        f"1. Edit-to-receipt latency ({args.clients} clients in one room, one writer typing "
        f"{args.chars} chars, one every {args.interval_ms:g} ms; median (min-max) of "
        f"{args.runs} runs)",
        ["config", "p50 ms", "p99 ms", "max ms", "never recv", "samples/run",
         "writer slip ms"], rows))
    steps = results["ramp"]
    print(table(
        f"2. Typing rate ramp (2 processes, {args.ramp_clients} clients alternating, "
        f"~{args.ramp_seconds:g} s per rate; stops once p50 > 2x the lowest p50 so far)",
        ["target/s", "sent/s", "chars", "p50 ms", "p99 ms", "p50 vs best", "p50 same/other",
         "never recv", "node CPU s", "services CPU s", "bench CPU s", "wall s"],
        [(f"{s['target_per_s']:g}", f"{s['sent_per_s']:.0f}", s["chars"], f"{s['p50_ms']:.1f}",
          f"{s['p99_ms']:.1f}", f"{s['p50_vs_best']:.2f}",
          "/".join(f"{s['by_process'][k]['p50_ms']:.1f}" for k in
                   ("same process", "other process") if k in s["by_process"]),
          s["never_received"],
          f"{s['cpu']['node_cpu_s']:.2f}", f"{s['cpu']['services_cpu_s']:.2f}",
          f"{s['cpu']['bench_cpu_s']:.2f}", f"{s['cpu']['wall_s']:.1f}") for s in steps]))
    sustained = [s for s in steps if s["p50_vs_best"] <= 2 and not s["never_received"]]
    if sustained:
        best = sustained[-1]
        limit = ("the p50 doubled at the next rate" if len(sustained) < len(steps)
                 else "the p50 never doubled: the ramp ended first")
        print(f"Sustained: {best['sent_per_s']:.0f} updates/s ({best['target_per_s']:g} "
              f"targeted) with p50 {best['p50_ms']:.1f} ms; {limit}.\n")
    st = results["storage"]
    k = 1000 / st["keystrokes"]

    def per_k(part: dict[str, Any], key: str) -> str:
        return f"{part[key] * k:.0f}"

    srows = []
    for label, part in (("before compaction", st["before"]), ("after compaction", st["after"])):
        srows.append((label, per_k(part["update"], "rows"), per_k(part["update"], "bytes"),
                      per_k(part["update"], "stored_bytes"), part["snapshot"]["rows"],
                      part["snapshot"]["bytes"], part["snapshot"]["stored_bytes"]))
    print(table(
        f"3. PostgreSQL per 1,000 keystrokes ({st['keystrokes']} typed, one every "
        f"{st['interval_ms']:g} ms; snapshots are totals for the document)",
        ["", "log rows", "log B", "log stored B", "snapshots", "snapshot B",
         "snapshot stored B"], srows))
    cpu_rows = [(phase, f"{c['wall_s']:.1f}", f"{c['bench_cpu_s']:.2f}",
                 f"{c['node_cpu_s']:.2f}", f"{c['services_cpu_s']:.2f}")
                for phase, c in results["cpu"].items()]
    totals = results["cpu_totals"]
    cpu_rows.append(("whole run", f"{wall:.1f}", f"{self_cpu():.2f}",
                     f"{totals['node_cpu_s']:.2f}", f"{totals['services_cpu_s']:.2f}"))
    print(table("4. CPU time (bench = this process; node = every Yjs client; services = both "
                "serve processes)",
                ["phase", "wall s", "bench CPU s", "node CPU s", "services CPU s"], cpu_rows))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started_at = time.monotonic()
    load_before = os.getloadavg()
    sys.stdout.reconfigure(line_buffering=True)
    interrupt_on_signals()
    tmp = Path(tempfile.mkdtemp(prefix="ydjango-scaleout-"))
    started: list[Any] = []
    loop = asyncio.new_event_loop()
    ok = False
    try:
        results = loop.run_until_complete(run(args, tmp, started))
        ok = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        for log in sorted(tmp.glob("service*.log")):
            print(f"--- {log} ---\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        return 1
    finally:
        for thing in reversed(started):
            with contextlib.suppress(Exception):
                if isinstance(thing, NodeDriver):
                    if thing.proc is not None and thing.proc.returncode is None:
                        if ok:
                            loop.run_until_complete(thing.shutdown())
                        else:
                            thing.proc.kill()
                elif isinstance(thing, PgDatabase):
                    thing.drop()
                else:
                    thing.stop()
        with contextlib.suppress(Exception):
            loop.close()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs kept in {tmp}", file=sys.stderr)
    wall = time.monotonic() - started_at
    load_after = os.getloadavg()
    report(args, results, wall)
    print(f"load average (1 min) {load_before[0]:.1f} before the run, {load_after[0]:.1f} after "
          f"it, on {os.cpu_count()} CPUs\n")
    results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "node": node_version(),
        "platform": platform.platform(), "cpus": os.cpu_count(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wall_s": round(wall, 1), "bench_cpu_s": round(self_cpu(), 2),
        "loadavg_1min": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
    }
    write_json(args.json, results)
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
