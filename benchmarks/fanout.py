"""Fan-out benchmark: what a join costs, and how long an edit takes to reach the others.

Run it from anywhere with the project's interpreter::

    python benchmarks/fanout.py

It starts its own servers (``python -m jupyter_ydjango serve``: one on the in-memory layer,
two sharing rooms through Redis on 127.0.0.1:6379), prints plain-text tables and writes
``benchmarks/results/fanout.json``. See ``benchmarks/README.md`` for what each column means.
This is a measurement, not a test: it asserts nothing about the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import math
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT)]

import benchlib  # noqa: E402
import pycrdt  # noqa: E402
from benchlib import (  # noqa: E402
    CpuMeter,
    CpuTime,
    close_loop,
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
from daphne_servers import Server, migrate, server_env  # noqa: E402
from frame_client import RawClient  # noqa: E402
from yjs_client import NodeDriver, YClient  # noqa: E402

from jupyter_ydjango.protocol.messages import (  # noqa: E402
    Message,
    YMessageType,
    YSyncMessageType,
    create_sync_step1_message,
    create_sync_step2_message,
)

RESULTS = ROOT / "benchmarks" / "results" / "fanout.json"
REDIS_URL = "redis://127.0.0.1:6379/0"


# --- small helpers --------------------------------------------------------------------------


def kind(message: Message) -> str:
    """A short name of a y-websocket message type."""
    if message.type is YMessageType.SYNC:
        return {YSyncMessageType.SYNC_STEP1: "step1", YSyncMessageType.SYNC_STEP2: "step2",
                YSyncMessageType.SYNC_UPDATE: "update"}[message.sync_type]
    return message.type.name.lower().replace("_", "-")


def is_sync(sync_type: YSyncMessageType) -> Callable[[Message], bool]:
    return lambda m: m.type is YMessageType.SYNC and m.sync_type is sync_type


def progress(text: str) -> None:
    benchlib.progress("fanout", text)


def redis_running() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


def text_of(size: int) -> str:
    """``size`` characters of prose-like ASCII."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while",
             "notebooks", "sync", "cells", "and", "outputs", "across", "every", "open",
             "browser", "tab"]
    out: list[str] = []
    n = 0
    i = 0
    while n < size:
        word = words[i % len(words)] + (".\n" if i % 17 == 16 else " ")
        out.append(word)
        n += len(word)
        i += 1
    return "".join(out)[:size]


# --- servers --------------------------------------------------------------------------------


class Servers:
    """Every server process this benchmark starts, stopped together at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[Server] = []
        #: the node driver, once started (killed with the servers after an interruption)
        self.driver: NodeDriver | None = None

    def start(self, name: str, count: int, **env: str) -> list[Server]:
        data = self.tmp / name
        data.mkdir()
        env = {"YDJANGO_ALLOW_ANONYMOUS": "1", "YDJANGO_LOG_LEVEL": "WARNING", **env}
        migrate(server_env(data, **env))
        servers = []
        for i in range(count):
            server = start_service(server_env(data, **env), data / f"server{i}.log")
            self.started.append(server)
            servers.append(server)
        return servers

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.started if s.proc.poll() is None]

    def check_alive(self) -> None:
        for server in self.started:
            if server.proc.poll() is not None:
                raise RuntimeError(f"server on port {server.port} exited with "
                                   f"{server.proc.returncode}:\n{server.log()[-3000:]}")

    def stop_all(self) -> None:
        for server in self.started:
            with contextlib.suppress(Exception):
                server.stop()

    def log_tails(self, chars: int = 2000) -> str:
        out = []
        for server in self.started:
            with contextlib.suppress(Exception):
                tail = server.log()[-chars:].strip()
                if tail:
                    out.append(f"--- {server.log_path} ---\n{tail}")
        return "\n".join(out)


# --- 1. join cost ---------------------------------------------------------------------------


@dataclass
class JoinResult:
    setup: str
    doc_bytes: int
    bystanders: int
    join_ms: float
    joiner_frames: int
    joiner_bytes: int
    joiner_full_docs: int
    joiner_kinds: list[str]
    bystander_frames: int
    bystander_bytes: int
    bystander_full_docs: int
    bystander_kinds: dict[str, int] = field(default_factory=dict)


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def join_cost(setup: str, writer_url: str, bystander_urls: list[str], joiner_url: str,
                    doc_chars: int, settle: float) -> JoinResult:
    """One join into a room with ``len(bystander_urls)`` synced raw clients (writer included)."""
    room = f"bench-join-{uuid.uuid4().hex[:10]}"
    clients: list[RawClient] = []
    try:
        writer = await RawClient.open(f"{writer_url}/{room}")
        clients.append(writer)
        await writer.handshake()
        text = text_of(doc_chars)
        chunk = 1000
        for i in range(0, len(text), chunk):
            await writer.edit(text[i:i + chunk])
        doc_bytes = len(writer.doc.get_update())
        for url in bystander_urls:
            client = await RawClient.open(f"{url}/{room}")
            clients.append(client)
            await client.handshake(timeout=30)
        await wait_until(lambda: all(len(c.text()) == len(text) for c in clients), 30,
                         "the bystanders to hold the whole document")
        await asyncio.sleep(settle)  # let anything the setup caused arrive before counting

        bystanders = list(clients)
        t0 = time.monotonic()
        joiner = await RawClient.open(f"{joiner_url}/{room}")
        clients.append(joiner)
        # What y-websocket does: send step 1; answer the server's step 1 with a step 2.
        await joiner.send(create_sync_step1_message(joiner.doc.get_state()))
        step1 = await joiner.wait_for(is_sync(YSyncMessageType.SYNC_STEP1), timeout=30)
        await joiner.send(create_sync_step2_message(
            joiner.doc.get_update(step1.payload)))
        await joiner.wait_for(is_sync(YSyncMessageType.SYNC_STEP2), timeout=30)
        join_ms = (time.monotonic() - t0) * 1000
        await wait_until(lambda: len(joiner.text()) == len(text), 30, "the joiner's document")
        await asyncio.sleep(settle)
        t1 = time.monotonic()

        def window(c: RawClient) -> list:
            return [f for f in c.frames if t0 <= f.at <= t1]

        joined = window(joiner)
        seen = [f for c in bystanders for f in window(c)]
        kinds: dict[str, int] = {}
        for frame in seen:
            for message in frame.messages:
                kinds[kind(message)] = kinds.get(kind(message), 0) + 1
        return JoinResult(
            setup=setup, doc_bytes=doc_bytes, bystanders=len(bystanders),
            join_ms=round(join_ms, 1),
            joiner_frames=len(joined), joiner_bytes=sum(len(f.data) for f in joined),
            joiner_full_docs=sum(len(f.data) >= doc_bytes for f in joined),
            joiner_kinds=["+".join(kind(m) for m in f.messages) for f in joined],
            bystander_frames=len(seen), bystander_bytes=sum(len(f.data) for f in seen),
            bystander_full_docs=sum(len(f.data) >= doc_bytes for f in seen),
            bystander_kinds=kinds,
        )
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


# --- 2. edit-to-receipt latency -------------------------------------------------------------


@dataclass
class LatencyRun:
    p50_ms: float
    p99_ms: float
    max_ms: float
    never_received: int
    samples: int
    send_slip_max_ms: float
    #: receivers on the writer's server / on the other server (Redis only)
    by_server: dict[str, dict[str, float]]
    #: the slowest characters: (index, ms since the first character, worst delay)
    worst: list[tuple[int, float, float]]
    cpu: dict[str, float]
    #: frames a raw observer per server got during the run (audit runs only)
    observed: list[dict[str, Any]] = field(default_factory=list)


async def latency_run(driver: NodeDriver, meter: CpuMeter, cpu: CpuTime, urls: list[str],
                      clients: int, chars: int, interval_ms: float, wait_s: float,
                      observe: bool = False) -> LatencyRun:
    """One writer types ``chars`` characters; every other client watches its text. The burst
    window's CPU time goes into ``cpu``.

    With ``observe`` (the audit run), one extra raw client per server records the frames it
    gets meanwhile, and halfway through the burst every node client renews its awareness
    state, as y-websocket does on its own every 15 s (``setLocalState`` of the same state).
    """
    room = f"bench-lat-{uuid.uuid4().hex[:10]}"
    handles: list[YClient] = []
    homes: list[int] = []
    observers: list[RawClient] = []
    observed: list[dict[str, Any]] = []
    try:
        for i in range(clients):
            home = i % len(urls)
            handles.append(await driver.connect(urls[home], room))
            homes.append(home)
        if observe:
            for url in urls:
                observers.append(await RawClient.open(f"{url}/{room}"))
                await observers[-1].handshake()
        writer, receivers = handles[0], handles[1:]
        await asyncio.sleep(0.5)  # the joins' awareness traffic settles
        for r in receivers:
            await r.watch()
        t0 = time.monotonic()

        async def renew() -> None:
            if observe:
                await asyncio.sleep(chars * interval_ms / 2000)
                await asyncio.gather(*(h.set_awareness({}) for h in handles))

        with meter.window(cpu):
            sent, _ = await asyncio.gather(writer.burst(chars, interval_ms), renew())
            waits = [r.wait_text(length=chars, timeout=wait_s) for r in receivers]
            await asyncio.gather(*waits, return_exceptions=True)
        watched = [await r.watched() for r in receivers]
        if observe:
            await asyncio.sleep(0.3)
            for home, obs in enumerate(observers):
                frames = [f for f in obs.frames if f.at >= t0]
                kinds: dict[str, int] = {}
                for frame in frames:
                    name = "+".join(kind(m) for m in frame.messages)
                    kinds[name] = kinds.get(name, 0) + 1
                aware = [f for f in frames
                         if any(m.type is YMessageType.AWARENESS for m in f.messages)]
                observed.append({
                    "server": "same server" if home == homes[0] else "other server",
                    "frames": len(frames), "bytes": sum(len(f.data) for f in frames),
                    "kinds": kinds, "text_ok": len(obs.text()) == chars,
                    "update_frames": kinds.get("update", 0),
                    "awareness_frames": len(aware),
                    "awareness_bytes": sum(len(f.data) for f in aware),
                    # one renewal per node client, each should reach the observer once
                    "awareness_expected": clients,
                })
    finally:
        await asyncio.gather(*(h.close() for h in handles), *(o.close() for o in observers),
                             return_exceptions=True)

    t_first = sent[0]["t"]
    slip = schedule_slip([s["t"] for s in sent], interval_ms)
    delays: list[float] = []
    per_home: dict[int, list[float]] = {}
    worst = [0.0] * len(sent)
    missing = 0
    for r, changes in enumerate(watched):
        for i, (s, got) in enumerate(zip(sent, driver_receipts(sent, changes), strict=True)):
            if got is None:
                missing += 1
                worst[i] = math.inf
                continue
            delay = got - s["t"]
            delays.append(delay)
            per_home.setdefault(homes[r + 1], []).append(delay)
            worst[i] = max(worst[i], delay)
    slowest = sorted(range(len(sent)), key=lambda i: worst[i], reverse=True)[:5]
    by_server = {}
    if len(urls) > 1:
        for home, values in sorted(per_home.items()):
            label = "same server" if home == homes[0] else "other server"
            by_server[label] = {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99),
                                "max_ms": max(values), "samples": len(values)}
    return LatencyRun(
        p50_ms=percentile(delays, 50) if delays else math.nan,
        p99_ms=percentile(delays, 99) if delays else math.nan,
        max_ms=max(delays) if delays else math.nan,
        never_received=missing, samples=len(delays), send_slip_max_ms=slip,
        by_server=by_server,
        worst=[(i, round(sent[i]["t"] - t_first, 1), round(worst[i], 2)) for i in slowest],
        cpu={}, observed=observed,
    )


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--doc-kb", type=int, default=200, help="document size for the join")
    parser.add_argument("--bystanders", type=int, default=20, help="synced clients at the join")
    parser.add_argument("--chars", type=int, default=300, help="characters typed per run")
    parser.add_argument("--interval-ms", type=float, default=20, help="typing interval")
    parser.add_argument("--runs", type=int, default=3, help="runs per latency configuration")
    parser.add_argument("--settle", type=float, default=0.5, help="seconds of quiet around a join")
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write the results")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, servers: Servers) -> dict[str, Any]:
    with_redis = redis_running()
    if not with_redis:
        print("Redis is not running on 127.0.0.1:6379: the Redis rows are skipped.\n")
    embedded = servers.start("embedded", 1)[0]
    redis = servers.start("redis", 2, YDJANGO_REDIS_URL=REDIS_URL) if with_redis else []
    results: dict[str, Any] = {"join": [], "latency": [], "cpu": {}}

    # 1. join cost
    driver: NodeDriver | None = None
    meter = CpuMeter(lambda: driver.proc.pid if driver and driver.proc else None, servers.pids)
    doc_chars = args.doc_kb * 1000
    n = args.bystanders
    join_setups = [("embedded", embedded.ws_url, [embedded.ws_url] * (n - 1), embedded.ws_url)]
    if redis:
        a, b = redis[0].ws_url, redis[1].ws_url
        split = [b if i % 2 == 0 else a for i in range(n - 1)]  # writer on a: n/2 on each
        join_setups += [("redis, joiner on server 1", a, split, a),
                        ("redis, joiner on server 2", a, split, b)]
    join_cpu = CpuTime()
    with meter.window(join_cpu):
        for setup, writer_url, bystander_urls, joiner_url in join_setups:
            progress(f"join cost: {setup}")
            servers.check_alive()
            result = await join_cost(setup, writer_url, bystander_urls, joiner_url,
                                     doc_chars, args.settle)
            results["join"].append(result.__dict__)
    results["cpu"]["join"] = join_cpu.as_dict()

    rows = [(r["setup"], r["doc_bytes"], r["bystanders"], r["join_ms"], r["joiner_frames"],
             r["joiner_bytes"], r["joiner_full_docs"], r["bystander_frames"],
             r["bystander_bytes"], r["bystander_full_docs"]) for r in results["join"]]
    print(table(
        f"1. Join cost ({args.doc_kb} KB of text, {n} synced raw clients, one raw joiner)",
        ["setup", "doc B", "N", "join ms", "joiner fr", "joiner B", "joiner full",
         "bystand fr", "bystand B", "bystand full"], rows))
    for r in results["join"]:
        extra = f"; bystanders got {r['bystander_kinds']}" if r["bystander_kinds"] else ""
        print(f"  {r['setup']}: joiner frames {r['joiner_kinds']}{extra}")
    print()

    # 2. latency
    ensure_node_modules()
    driver = servers.driver = NodeDriver(default_timeout=60)
    await driver.start()
    try:
        configs = [("embedded, 2 clients", [embedded.ws_url], 2),
                   ("embedded, 10 clients", [embedded.ws_url], 10)]
        if redis:
            configs.append(("redis 2 servers, 10 clients", [s.ws_url for s in redis], 10))
        for name, urls, count in configs:
            config_cpu = CpuTime()
            runs: list[LatencyRun] = []
            for k in range(args.runs):
                progress(f"latency: {name}, run {k + 1}/{args.runs}")
                servers.check_alive()
                run_cpu = CpuTime()
                one = await latency_run(driver, meter, run_cpu, urls, count, args.chars,
                                        args.interval_ms, wait_s=10)
                one.cpu = run_cpu.as_dict()
                config_cpu.add(run_cpu)
                runs.append(one)
                await asyncio.sleep(0.5)
            entry = {
                "config": name, "clients": count, "servers": len(urls), "chars": args.chars,
                "interval_ms": args.interval_ms,
                "runs": [r.__dict__ for r in runs],
                "summary": {key: spread([getattr(r, key) for r in runs])
                            for key in ("p50_ms", "p99_ms", "max_ms", "never_received",
                                        "send_slip_max_ms")},
            }
            if runs[0].by_server:
                entry["summary_by_server"] = {
                    label: {key: spread([r.by_server[label][key] for r in runs])
                            for key in ("p50_ms", "p99_ms", "max_ms")}
                    for label in runs[0].by_server
                }
            # One more run, outside the statistics, with a raw observer on each server.
            progress(f"latency: {name}, audit run")
            audit = await latency_run(driver, meter, CpuTime(), urls, count, args.chars,
                                      args.interval_ms, wait_s=10, observe=True)
            entry["audit"] = audit.__dict__
            results["latency"].append(entry)
            results["cpu"][f"latency: {name}"] = config_cpu.as_dict()
    finally:
        results["cpu_totals"] = {"node_cpu_s": round(proc_cpu(meter.node_pid()), 2)}
        await driver.shutdown()

    print(table(
        f"2. Edit-to-receipt latency ({args.chars} chars, one every {args.interval_ms:g} ms; "
        f"median (min-max) of {args.runs} runs)",
        ["config", "p50 ms", "p99 ms", "max ms", "never recv", "samples/run",
         "writer slip ms"],
        [(e["config"], fmt_spread(e["summary"]["p50_ms"], 2), fmt_spread(e["summary"]["p99_ms"]),
          fmt_spread(e["summary"]["max_ms"]), fmt_spread(e["summary"]["never_received"], 0),
          e["runs"][0]["samples"], fmt_spread(e["summary"]["send_slip_max_ms"]))
         for e in results["latency"]]))
    split_rows = [
        (f"{e['config']}: {label}", fmt_spread(s["p50_ms"], 2), fmt_spread(s["p99_ms"]),
         fmt_spread(s["max_ms"]))
        for e in results["latency"] for label, s in e.get("summary_by_server", {}).items()
    ]
    if split_rows:
        print(table("2b. Latency by receiver's server (relative to the writer's)",
                    ["config: receivers", "p50 ms", "p99 ms", "max ms"], split_rows))
    print(table(
        "2c. Audit run (not in the statistics above): frames a raw observer got; halfway "
        "through, every node client renews its awareness",
        ["config: observer", "chars", "update fr", "awareness fr", "expected", "aw bytes",
         "other fr", "text ok"],
        [(f"{e['config']}: {o['server']}" if len(e["audit"]["observed"]) > 1 else e["config"],
          e["chars"], o["update_frames"], o["awareness_frames"], o["awareness_expected"],
          o["awareness_bytes"], o["frames"] - o["update_frames"] - o["awareness_frames"],
          "yes" if o["text_ok"] else "NO")
         for e in results["latency"] for o in e["audit"]["observed"]]))
    print(table(
        "2d. Latency of the audit run (awareness renewal halfway through)",
        ["config", "p50 ms", "p99 ms", "max ms", "never recv", "slowest chars (#index@ms: ms)"],
        [(e["config"], f"{e['audit']['p50_ms']:.2f}", f"{e['audit']['p99_ms']:.1f}",
          f"{e['audit']['max_ms']:.1f}", e["audit"]["never_received"],
          ", ".join(f"#{i}@{t:.0f}: {d:.1f}" for i, t, d in e["audit"]["worst"][:3]))
         for e in results["latency"]]))
    print("Slowest characters per run (char index @ ms after the first char: worst delay ms)")
    for e in results["latency"]:
        for k, r in enumerate(e["runs"], 1):
            worst = ", ".join(f"#{i}@{t:.0f}: {d:.1f}" for i, t, d in r["worst"])
            print(f"  {e['config']}, run {k}: {worst}")
    print()
    return results


def print_cpu(results: dict[str, Any], total_wall: float) -> None:
    rows = [(phase, f"{c['wall_s']:.1f}", f"{c['bench_cpu_s']:.2f}", f"{c['node_cpu_s']:.2f}",
             f"{c['servers_cpu_s']:.2f}") for phase, c in results["cpu"].items()]
    totals = results["cpu_totals"]
    rows.append(("whole run (from start)", f"{total_wall:.1f}", f"{self_cpu():.2f}",
                 f"{totals['node_cpu_s']:.2f}", f"{totals['servers_cpu_s']:.2f}"))
    print(table("3. CPU time (latency rows: the burst windows only, summed over the runs)",
                ["phase", "wall s", "bench CPU s", "node CPU s", "servers CPU s"], rows))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    sys.stdout.reconfigure(line_buffering=True)
    # Ctrl-C and SIGTERM stop the run at once; the finally block below cleans up.
    interrupt_on_signals()
    tmp = Path(tempfile.mkdtemp(prefix="ydjango-bench-"))
    servers = Servers(tmp)
    loop = asyncio.new_event_loop()
    ok = keep_logs = False
    try:
        results = loop.run_until_complete(run(args, servers))
        ok = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:
        keep_logs = True
        traceback.print_exc()
        print("benchmark failed; the end of the server logs:", file=sys.stderr)
        print(servers.log_tails(), file=sys.stderr)
        return 1
    finally:
        servers_cpu = sum(proc_cpu(pid) for pid in servers.pids())
        # Child processes first: after an interruption, the pending tasks' cleanups would
        # otherwise wait for replies from a node driver whose reader is already cancelled.
        driver = servers.driver
        if driver is not None and driver.proc is not None and driver.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                driver.proc.kill()
        servers.stop_all()
        close_loop(loop)
        if ok or not keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"server logs kept in {tmp}", file=sys.stderr)
    total_wall = time.monotonic() - started
    results["cpu_totals"]["servers_cpu_s"] = round(servers_cpu, 2)
    print_cpu(results, total_wall)
    results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "node": node_version(),
        "pycrdt": pycrdt.__version__, "platform": platform.platform(),
        "cpus": os.cpu_count(), "redis": bool(results["join"][1:]),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "wall_s": round(total_wall, 1),
        "bench_cpu_s": round(self_cpu(), 2),
    }
    write_json(args.json, results)
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
