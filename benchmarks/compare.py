"""jupyter-ydjango against jupyter-collaboration 5.0.x: the same clients drive both servers.

    python benchmarks/compare.py            # full run (~25 min on 2 cores)
    python benchmarks/compare.py --quick    # smaller run (~8 min), for development
    python benchmarks/compare.py --only stall,scale-open    # some sections only

Run it with the project's interpreter (the project installed with its test extras). It makes
(or reuses) a separate virtual environment, ``benchmarks/.venv-jc``, with
``jupyter-collaboration==5.0.*``, JupyterLab 4.6 and matplotlib from PyPI; jupyter-collaboration
is never a dependency of the project. It then starts both Jupyter servers on 127.0.0.1, ours
from this interpreter and theirs from that environment, each in its own temporary root, data
and config directories, and measures, alternating the servers from trial to trial:

1. cold and warm opens (session PUT, websocket, SYNC, the client holds the whole notebook);
2. fan-out latency (one writer typing into a cell every 50 ms, 10/50/100 clients);
3. throughput (one writer as fast as it can, 10 listeners);
4. memory (RSS idle, with a 5,000-cell room loaded, with 100 clients connected);
5. saving (edit -> file on disk with the default 1 s debounce; an explicit RAW save);
6. how cost grows: cold open time and RSS from 100 to 10,000 cells (``scale-open``), RSS
   with 1 to 200 idle rooms loaded (``scale-rooms``), fan-out from 10 to 200 clients
   (``scale-fanout``);
7. no stall across rooms: typing in one room while a 5,000-cell notebook cold-opens in
   another (``stall``).

A server's CPU time and RSS are those of its process and of every process it started.
It prints a table (medians over the trials with their min-max, and the ratio us / them), the
targets met or missed, how cost grows, the CPU time of the clients and servers, and writes
``benchmarks/results/compare.json``, ``benchmarks/results/compare.png`` and
``benchmarks/results/scaling.png``. See ``benchmarks/README.md``. This is a measurement, not
a test: it asserts nothing.

Only the standard library (and ``benchlib``, which imports nothing else) is imported at module
level, so that the charts can be drawn by the other environment's interpreter
(``python compare.py --plot JSON PNG SCALING_PNG``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import functools
import gc
import hashlib
import http.client
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import benchlib
from benchlib import (
    ensure_node_modules,
    first_arrivals,
    fmt_spread,
    loadavg,
    percentile,
    proc_cpu,
    self_cpu,
    summary,
    table,
    tree_cpu,
    tree_memory,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
JC_VENV = BENCH_DIR / ".venv-jc"
JC_REQUIREMENTS = ["jupyter-collaboration==5.0.*", "jupyterlab>=4.6,<4.7", "matplotlib>=3.7"]
DRIVER = BENCH_DIR / "js" / "notebook_clients.mjs"
RESULTS_JSON = BENCH_DIR / "results" / "compare.json"
RESULTS_PNG = BENCH_DIR / "results" / "compare.png"
RESULTS_SCALING_PNG = BENCH_DIR / "results" / "scaling.png"
EXTENSION_CONFIG = ROOT / "jupyter-config" / "jupyter_server_config.d" / "jupyter_ydjango.json"
#: A config file that keeps jupytext's server extension (and contents manager) off.
NO_JUPYTEXT = {"ServerApp": {"jpserver_extensions": {"jupyterlab_jupytext": False}}}
FIXTURES = Path(os.environ.get("NOTEBOOK_FIXTURES_DIR", "/work/shared/fixtures/notebooks"))
TOKEN = "compare-benchmark-token"
US, THEM = "ydjango", "jupyter-collaboration"
SERVERS = (US, THEM)
#: The sections, in the order a full run runs them.
SECTIONS = ("memory", "open", "fanout", "throughput", "save", "scale-open", "scale-rooms",
            "scale-fanout", "stall")
#: The cell the writers type into (a code cell in every generated notebook).
TYPING_CELL = 1
#: Characters typed before a fan-out or throughput measurement (not measured).
WARM_UP_CHARS = 5


def int_list(text: str) -> list[int]:
    """``"1,50,200"`` -> ``[1, 50, 200]`` (an option's value)."""
    return [int(part) for part in text.split(",") if part.strip()]


def progress(text: str) -> None:
    benchlib.progress(f"compare {time.strftime('%H:%M:%S')}", text)


# --- the other environment ------------------------------------------------------------------


def jc_python() -> Path:
    return JC_VENV / "bin" / "python"


def _jc_versions() -> dict[str, str] | None:
    code = ("import importlib.metadata as m, json; print(json.dumps({p: m.version(p) for p in "
            "('jupyter-collaboration', 'jupyter-server-ydoc', 'jupyter-ydoc', 'pycrdt', "
            "'pycrdt-websocket', 'jupyterlab', 'jupyter-server', 'tornado', 'matplotlib')}))")
    try:
        out = subprocess.run([str(jc_python()), "-c", code], capture_output=True, text=True,
                             check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return json.loads(out.stdout)


def ensure_jc_venv() -> dict[str, str]:
    """Create or reuse ``benchmarks/.venv-jc`` with jupyter-collaboration 5.0.x; its versions."""
    versions = _jc_versions() if jc_python().exists() else None
    ok = (versions is not None and versions["jupyter-collaboration"].startswith("5.0.")
          and versions["jupyterlab"].startswith("4.6."))
    if ok:
        return versions
    progress(f"installing {' '.join(JC_REQUIREMENTS)} into {JC_VENV} (once)")
    if not jc_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(JC_VENV)], check=True)
    proc = subprocess.run([str(jc_python()), "-m", "pip", "install", "-q", *JC_REQUIREMENTS],
                          capture_output=True, text=True)
    noise = "WARNING: Location"
    for line in (proc.stdout + proc.stderr).splitlines():
        if noise not in line and line.strip():
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"pip install into {JC_VENV} failed")
    versions = _jc_versions()
    if versions is None:
        raise SystemExit(f"{JC_VENV}: cannot read the installed versions")
    return versions


def our_versions() -> dict[str, str]:
    import importlib.metadata as m

    return {p: m.version(p) for p in ("jupyter-ydjango", "channels", "django",
                                      "jupyterlab", "jupyter-server", "tornado", "pycrdt",
                                      "jupyter-ydoc", "websockets")}


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterProcess:
    """A Jupyter server with one collaboration backend, in its own temporary directories.

    ``args``: more command-line options; ``env``: more environment variables (the
    benchmark's own ``PYTHONPATH`` and ``YDJANGO_*`` variables are not passed on)."""

    def __init__(self, kind: str, tmp: Path, label: str, args: Sequence[str] = (),
                 env: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.dir = tmp / f"{label}-{kind}"
        self.root = self.dir / "root"
        config = self.dir / "config"
        for d in (self.root, config / "jupyter_server_config.d", self.dir / "data",
                  self.dir / "ydjango"):
            d.mkdir(parents=True, exist_ok=True)
        more_env = env or {}
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "VIRTUAL_ENV") and not k.startswith("YDJANGO_")}
        env.update({
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(self.dir / "data"),
            "JUPYTER_RUNTIME_DIR": str(self.dir / "runtime"),
            "JUPYTER_PLATFORM_DIRS": "0",
            "PYTHONUNBUFFERED": "1",
            **more_env,
        })
        if kind == US:
            python = sys.executable
            shutil.copy(EXTENSION_CONFIG, config / "jupyter_server_config.d")
            # jupytext (a test extra) would replace the stock contents manager both are
            # compared with
            (config / "jupyter_server_config.json").write_text(
                json.dumps(NO_JUPYTEXT))
            env["YDJANGO_DATA_DIR"] = str(self.dir / "ydjango")
            extra: list[str] = []
        else:
            python = str(jc_python())
            extra = [f"--SQLiteYStore.db_path={self.dir / 'ystore.db'}",
                     f"--YDocExtension.session_store_path={self.dir / 'sessions.json'}"]
        self.port = free_port()
        self.log_path = self.dir / "server.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (open while the server runs)
        self.proc = subprocess.Popen(
            [python, "-m", "jupyter_server", "--ServerApp.ip=127.0.0.1",
             f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", "--allow-root",
             "--no-browser", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.root_dir={self.root}", *extra, *args],
            env=env, cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited:\n{self.log_tail()}")
            with contextlib.suppress(OSError):
                if self.request("GET", "api/status")[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} server not ready in {timeout} s:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def request(self, method: str, path: str, body: Any = None,
                token: str = TOKEN) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        headers = {"Authorization": f"token {token}"}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, f"/{path}", body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(payload)
        except ValueError:
            return response.status, payload

    def session(self, path: str, body: dict[str, str] | None = None) -> dict[str, Any]:
        """``PUT api/collaboration/session/{path}``, of a notebook unless ``body`` says."""
        status, info = self.request("PUT", f"api/collaboration/session/{quote(path)}",
                                    body or {"format": "json", "type": "notebook"})
        if status not in (200, 201):
            raise RuntimeError(f"{self.kind}: session {path}: {status} {info}")
        return info

    @property
    def room_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/collaboration/room"

    def room_url(self, info: dict[str, Any], token: str = TOKEN) -> str:
        room = f"{info['format']}:{info['type']}:{info['fileId']}"
        return f"{self.room_base}/{room}?sessionId={quote(info['sessionId'])}&token={token}"

    def cpu(self) -> float:
        """CPU seconds of the server and of the worker processes it started."""
        return tree_cpu(self.pid)

    def memory(self) -> dict[str, float]:
        """``VmRSS`` and ``VmHWM`` (MB) of the server and of the worker processes it started."""
        return tree_memory(self.pid)

    def put_file(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- the node clients -----------------------------------------------------------------------


class Driver:
    """One ``node benchmarks/js/notebook_clients.mjs`` process (many Yjs clients)."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._rid = 0
        self._reader: asyncio.Task[None] | None = None
        self._stderr: list[str] = []

    async def start(self) -> Driver:
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(DRIVER), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, limit=256 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        await self.call("now")
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            reply = json.loads(line)
            fut = self._pending.pop(reply["rid"], None)
            if fut is not None and not fut.done():
                fut.set_result(reply)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("node driver exited:\n"
                                               + "\n".join(self._stderr[-30:])))

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._stderr.append(line.decode(errors="replace").rstrip())
            del self._stderr[:-200]

    async def call(self, cmd: str, timeout: float = 120, **fields: Any) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self._rid += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._rid] = fut
        self.proc.stdin.write((json.dumps({**fields, "cmd": cmd, "rid": self._rid}) + "\n")
                              .encode())
        await self.proc.stdin.drain()
        reply = await asyncio.wait_for(fut, timeout)
        if not reply["ok"]:
            raise RuntimeError(f"driver {cmd}: {reply['error']}")
        return reply

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# --- statistics -----------------------------------------------------------------------------


def orders(trial: int) -> tuple[str, str]:
    """Which server goes first in a trial: they alternate, so that drift hits both."""
    return SERVERS if trial % 2 == 0 else SERVERS[::-1]


def summarise(per: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, Any]]:
    """Per server, the ``summary`` over its trials of every figure of a trial's row."""
    return {k: {key: summary([row[key] for row in per[k]]) for key in per[k][0]}
            for k in SERVERS}


@dataclass
class CpuWindow:
    """Wall and CPU seconds of the benchmark, the node drivers and each server in a section."""

    wall: float = 0.0
    bench: float = 0.0
    node: float = 0.0
    servers: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SERVERS, 0.0))
    load: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"wall_s": round(self.wall, 2), "bench_cpu_s": round(self.bench, 2),
                "node_cpu_s": round(self.node, 2),
                "server_cpu_s": {k: round(v, 2) for k, v in self.servers.items()},
                "load_1min": self.load}


class Meter:
    """CPU accounting of one section; servers and drivers come and go within it."""

    def __init__(self) -> None:
        self.window = CpuWindow()
        self._servers: dict[int, tuple[str, float]] = {}
        self._drivers: dict[int, float] = {}
        self._t0 = time.monotonic()
        self._bench0 = self_cpu()
        self.window.load.append(loadavg())

    def add_server(self, server: JupyterProcess) -> None:
        self._servers[server.pid] = (server.kind, server.cpu())

    def take_server(self, server: JupyterProcess) -> None:
        """Account a server's CPU before it stops."""
        kind, start = self._servers.pop(server.pid)
        self.window.servers[kind] += server.cpu() - start

    def add_driver(self, driver: Driver) -> None:
        self._drivers[driver.pid] = proc_cpu(driver.pid)

    def take_driver(self, driver: Driver) -> None:
        start = self._drivers.pop(driver.pid)
        used = proc_cpu(driver.pid) - start
        if not math.isnan(used):
            self.window.node += used

    def finish(self) -> CpuWindow:
        self.window.wall = time.monotonic() - self._t0
        self.window.bench = self_cpu() - self._bench0
        self.window.load.append(loadavg())
        return self.window


@contextlib.asynccontextmanager
async def fresh_server(kind: str, tmp: Path, label: str,
                       meter: Meter) -> AsyncIterator[JupyterProcess]:
    """A new server of ``kind`` (``label`` names its directory: one per server), warmed up,
    its CPU time accounted, stopped at the end."""
    server = JupyterProcess(kind, tmp, label)
    meter.add_server(server)
    try:
        await warm_up(server)
        yield server
    finally:
        meter.take_server(server)
        server.stop()


@contextlib.asynccontextmanager
async def server_pair(tmp: Path, label: str,
                      meter: Meter) -> AsyncIterator[dict[str, JupyterProcess]]:
    """Both servers, warmed up, their CPU time accounted, stopped at the end."""
    async with contextlib.AsyncExitStack() as stack:
        yield {kind: await stack.enter_async_context(fresh_server(kind, tmp, label, meter))
               for kind in SERVERS}


@contextlib.asynccontextmanager
async def node_drivers(meter: Meter, count: int = 2) -> AsyncIterator[list[Driver]]:
    """``count`` node driver processes, their CPU time accounted, stopped at the end."""
    drivers: list[Driver] = []
    try:
        for _ in range(count):
            drivers.append(await Driver().start())
            meter.add_driver(drivers[-1])
        yield drivers
    finally:
        for driver in drivers:
            meter.take_driver(driver)
            await driver.stop()


# --- notebooks ------------------------------------------------------------------------------


@dataclass
class Notebook:
    label: str
    data: bytes
    cells: int

    @property
    def mb(self) -> float:
        return len(self.data) / 1e6


@functools.cache
def generated(n: int) -> Notebook:
    """``tests/support/notebooks.py``'s generated notebook of ``n`` cells, made once."""
    import nbformat
    from notebooks import generated_notebook

    progress(f"generating a {n:,}-cell notebook")
    data = (nbformat.writes(generated_notebook(n)) + "\n").encode()
    return Notebook(f"generated {n:,} cells", data, n)


def fixture_notebooks() -> list[Notebook]:
    out = []
    for path in sorted(FIXTURES.glob("pdsh-*.ipynb")) if FIXTURES.is_dir() else []:
        data = path.read_bytes()
        out.append(Notebook(path.stem, data, len(json.loads(data)["cells"])))
    return out


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}.ipynb"


# --- the Python notebook client (pycrdt + jupyter_ydoc) -------------------------------------


def timed_client_class() -> Any:
    from notebook_client import DocClient

    class TimedClient(DocClient):
        """tests/support/notebook_client.py's client, noting when the SYNC step 2 frame came
        and was applied."""

        step2_received: float | None = None
        step2_applied: float | None = None

        def _handle(self, message: Any) -> None:
            is_step2 = message.type == 0 and message.sync_type == 1
            if is_step2:
                self.step2_received = time.monotonic()
            super()._handle(message)
            if is_step2:
                self.step2_applied = time.monotonic()

    return TimedClient


async def open_notebook(server: JupyterProcess, path: str, cells: int) -> tuple[Any, dict]:
    """Session PUT, websocket, SYNC; returns once the client holds all ``cells`` cells.

    This process's garbage is collected before, and its collector is off during, the timing:
    a collection of an earlier notebook's client objects (over 100 ms after a 5,000-cell one)
    would otherwise land inside the next open measured, of either server.
    """
    client_class = timed_client_class()
    gc.collect()
    gc.disable()
    try:
        t0 = time.monotonic()
        info = server.session(path)
        t_put = time.monotonic()
        client = await client_class.open(server.room_url(info), timeout=120)
        if len(client.model.ycells) != cells:
            await client.wait_for(lambda m: len(m.ycells) == cells, timeout=120)
        t_end = time.monotonic()
    finally:
        gc.enable()
    received = client.step2_received or t_end
    applied = client.step2_applied or t_end
    return client, {
        "total_ms": (t_end - t0) * 1000,
        "put_ms": (t_put - t0) * 1000,
        # websocket handshake + the server's load + its answer to our step 1, until the frame
        "server_ms": (received - t_put) * 1000,
        "client_apply_ms": (applied - received) * 1000,
    }


def source_digest(client: Any) -> str:
    """A digest of every cell's source, to check both servers delivered the same notebook."""
    sources = [str(cell["source"]) for cell in client.model.ycells]
    return hashlib.sha256("\x00".join(sources).encode()).hexdigest()[:16]


# --- 1. opening -----------------------------------------------------------------------------


async def bench_open(opts: argparse.Namespace, tmp: Path, notebooks: list[Notebook],
                     meter: Meter) -> dict[str, Any]:
    raw: dict[str, dict[str, list[dict]]] = {nb.label: {k: [] for k in SERVERS}
                                             for nb in notebooks}
    warm: dict[str, dict[str, list[float]]] = {nb.label: {k: [] for k in SERVERS}
                                               for nb in notebooks}
    digests: dict[str, dict[str, str]] = {nb.label: {} for nb in notebooks}
    cpu: dict[str, dict[str, list[float]]] = {nb.label: {k: [] for k in SERVERS}
                                              for nb in notebooks}
    async with server_pair(tmp, "open", meter) as servers:
        for trial in range(opts.trials):
            for nb in notebooks:
                for kind in orders(trial):
                    server = servers[kind]
                    path = server.put_file(unique(f"open/{nb.cells}"), nb.data)
                    cpu0 = server.cpu()
                    client, timing = await open_notebook(server, path, nb.cells)
                    cpu[nb.label][kind].append(server.cpu() - cpu0)
                    raw[nb.label][kind].append(timing)
                    if trial == 0:
                        digests[nb.label][kind] = source_digest(client)
                    second, warm_timing = await open_notebook(server, path, nb.cells)
                    warm[nb.label][kind].append(warm_timing["total_ms"])
                    await second.close()
                    await client.close()
                    progress(f"open trial {trial + 1}/{opts.trials} {nb.label} {kind}: "
                             f"cold {timing['total_ms']:.0f} ms, "
                             f"warm {warm[nb.label][kind][-1]:.0f} ms")
    out: dict[str, Any] = {}
    for nb in notebooks:
        same = len(set(digests[nb.label].values())) == 1
        out[nb.label] = {
            "cells": nb.cells, "mb": round(nb.mb, 3), "same_content": same,
            "cold": {k: {key: summary([t[key] for t in raw[nb.label][k]])
                         for key in ("total_ms", "put_ms", "server_ms", "client_apply_ms")}
                     for k in SERVERS},
            "warm": {k: summary(warm[nb.label][k]) for k in SERVERS},
            "server_cpu_ms": {k: summary([c * 1000 for c in cpu[nb.label][k]])
                              for k in SERVERS},
        }
    return out


async def warm_up(server: JupyterProcess) -> None:
    """Open and close a tiny notebook: every code path is loaded (Django, the file ids)."""
    import nbformat
    from notebooks import generated_notebook

    path = server.put_file(unique("warmup"), nbformat.writes(generated_notebook(3)).encode())
    client, _ = await open_notebook(server, path, 3)
    await client.close()


# --- 2. fan-out latency ---------------------------------------------------------------------


def char_delays(sent: dict[str, list[float]], watched: dict[str, dict[str, list[float]]],
                ) -> list[list[float | None]]:
    """Per character, its send-to-receipt delay to each receiver (None: never received)."""
    arrivals = [first_arrivals(sent["length"], rec["t"], rec["length"])
                for rec in watched.values()]
    return [[None if a is None else a - t for a in column]
            for t, column in zip(sent["t"], zip(*arrivals, strict=True), strict=True)]


def delays(sent: dict[str, list[float]], watched: dict[str, dict[str, list[float]]],
           ) -> tuple[list[float], int, list[tuple[float, float]]]:
    """Send-to-receipt delay of every (character, receiver) pair, how many never came, and
    per character the first and the last receiver's delay."""
    per_char = char_delays(sent, watched)
    received = [[d for d in row if d is not None] for row in per_char]
    lost = sum(row.count(None) for row in per_char)
    spans = [(min(row), max(row)) for row in received if row]
    return [d for row in received for d in row], lost, spans


async def connect_clients(server: JupyterProcess, drivers: list[Driver], path: str,
                          writer: int, receivers: list[list[str]]) -> tuple[str, dict]:
    info = server.session(path)
    room = f"json:notebook:{info['fileId']}"
    params = {"sessionId": info["sessionId"], "token": TOKEN}
    await drivers[writer].call("connect", ids=["w"], url=server.room_base, room=room,
                               params=params)
    await asyncio.gather(*(
        d.call("connect", ids=ids, url=server.room_base, room=room, params=params,
               concurrency=10, timeout_ms=120_000, timeout=180)
        for d, ids in zip(drivers, receivers, strict=True) if ids))
    return room, params


def split_receivers(n: int, drivers: int, writer_driver_share: bool) -> list[list[str]]:
    """Receiver ids per driver: alternating, the writer's driver taking fewer if shared."""
    out: list[list[str]] = [[] for _ in range(drivers)]
    for i in range(n):
        slot = (i + 1) % drivers if writer_driver_share else 1 + i % (drivers - 1)
        out[slot].append(f"r{i}")
    return out


async def warm_up_and_watch(drivers: list[Driver], receivers: list[list[str]]) -> int:
    """Quiet, then the writer's warm-up characters, quiet again, then every receiver watches
    the cell; its length then.

    The warm-up characters are not measured: a room's first edit starts work that later ones
    do not (a save timer, the update log's writer), and its delay would otherwise weigh on
    the tail of a short burst.
    """
    await asyncio.sleep(1.0)  # awareness of the joins settles
    await drivers[0].call("type", id="w", cell=TYPING_CELL, count=WARM_UP_CHARS,
                          interval_ms=50)
    await asyncio.sleep(1.0)
    replies = await asyncio.gather(*(d.call("watch", ids=ids, cell=TYPING_CELL)
                                     for d, ids in zip(drivers, receivers, strict=True) if ids))
    return replies[0]["length"]


async def wait_received(drivers: list[Driver], receivers: list[list[str]], length: int,
                        wait_s: float) -> None:
    """Wait (up to ``wait_s``) until every receiver's cell has ``length`` characters."""
    await asyncio.gather(*(d.call("wait_length", ids=ids, cell=TYPING_CELL, length=length,
                                  timeout_ms=int(wait_s * 1000), timeout=wait_s + 60)
                           for d, ids in zip(drivers, receivers, strict=True) if ids))


async def watched_by(drivers: list[Driver], receivers: list[list[str]]) -> dict[str, Any]:
    """Every receiver's record of the cell's changes: ``{id: {t: [...], length: [...]}}``."""
    watched: dict[str, Any] = {}
    for d, ids in zip(drivers, receivers, strict=True):
        if ids:
            watched.update((await d.call("watched", ids=ids))["watched"])
    return watched


async def run_burst(drivers: list[Driver], receivers: list[list[str]], count: int,
                    interval_ms: float, wait_s: float, server: JupyterProcess,
                    ) -> dict[str, Any]:
    """After the warm-up, the writer (``w`` on driver 0) types; every receiver watches;
    returns the raw data."""
    start_length = await warm_up_and_watch(drivers, receivers)
    cpu0 = server.cpu()
    sent = await drivers[0].call("type", id="w", cell=TYPING_CELL, count=count,
                                 interval_ms=interval_ms,
                                 timeout=count * max(interval_ms, 1) / 1000 + 120)
    await wait_received(drivers, receivers, sent["length"][-1], wait_s)
    server_cpu = server.cpu() - cpu0
    return {"sent": sent, "watched": await watched_by(drivers, receivers),
            "start_length": start_length, "server_cpu_s": server_cpu}


async def fanout_trial(server: JupyterProcess, drivers: list[Driver], notebook: Notebook,
                       n: int, chars: int, interval_ms: float) -> dict[str, float]:
    """``n`` clients in a fresh room of ``notebook``: one types ``chars`` characters, the
    others receive them; the delays' figures."""
    path = server.put_file(unique(f"fanout/{n}"), notebook.data)
    receivers = split_receivers(n - 1, 2, writer_driver_share=True)
    await connect_clients(server, drivers, path, 0, receivers)
    data = await run_burst(drivers, receivers, chars, interval_ms, wait_s=10, server=server)
    for d in drivers:
        await d.call("close")
    values, lost, spans = delays(data["sent"], data["watched"])
    return {"p50_ms": percentile(values, 50) if values else math.nan,
            "p99_ms": percentile(values, 99) if values else math.nan,
            "max_ms": max(values) if values else math.nan,
            "lost": lost, "samples": len(values) + lost,
            # median over the characters: the first receiver's delay, and how much later
            # the last receiver got it
            "first_ms": statistics.median(a for a, _ in spans),
            "spread_ms": statistics.median(b - a for a, b in spans),
            "writer_slip_ms": data["sent"]["slip_ms"],
            # server CPU per character, per receiver (typing, until received)
            "server_us_per_delivery": data["server_cpu_s"] * 1e6 / (chars * (n - 1)),
            "failed": 0}


#: The figures of a fan-out trial, all unknown for a trial the server failed.
FANOUT_FIGURES = ("p50_ms", "p99_ms", "max_ms", "lost", "samples", "first_ms", "spread_ms",
                  "writer_slip_ms", "server_us_per_delivery")


async def bench_fanout(opts: argparse.Namespace, tmp: Path, notebook: Notebook, meter: Meter,
                       clients: list[int], label: str) -> dict[str, Any]:
    """Fan-out trials for each room size of ``clients``; ``label`` names the section."""
    results: dict[str, Any] = {}
    async with server_pair(tmp, label, meter) as servers, node_drivers(meter) as drivers:
        for n in clients:
            per: dict[str, list[dict[str, float]]] = {k: [] for k in SERVERS}
            for trial in range(opts.fanout_trials):
                for kind in orders(trial):
                    try:
                        row = await fanout_trial(servers[kind], drivers, notebook, n,
                                                 opts.fanout_chars, opts.interval_ms)
                    except RuntimeError as exc:
                        # a server that drops clients (jupyter-collaboration, at 200 clients,
                        # once) is a result: the trial counts as failed, the run goes on
                        progress(f"{label} {n} clients trial {trial + 1}/{opts.fanout_trials} "
                                 f"{kind}: failed: {exc}")
                        for d in drivers:
                            with contextlib.suppress(Exception):
                                await d.call("close")
                        per[kind].append({**dict.fromkeys(FANOUT_FIGURES, math.nan),
                                          "failed": 1})
                        continue
                    per[kind].append(row)
                    progress(f"{label} {n} clients trial {trial + 1}/{opts.fanout_trials} "
                             f"{kind}: p50 {row['p50_ms']:.1f} p99 {row['p99_ms']:.1f} max "
                             f"{row['max_ms']:.1f} ms, lost {row['lost']}")
            results[str(n)] = summarise(per)
    return results


# --- 3. throughput --------------------------------------------------------------------------


async def throughput_trial(server: JupyterProcess, drivers: list[Driver], notebook: Notebook,
                           chars: int, listeners: int) -> dict[str, float]:
    """One writer alone in driver 0 types ``chars`` characters as fast as it can into a fresh
    room of ``notebook``; ``listeners`` in driver 1 receive them; the rates."""
    path = server.put_file(unique("throughput"), notebook.data)
    receivers = [[], [f"r{i}" for i in range(listeners)]]
    await connect_clients(server, drivers, path, 0, receivers)
    node0 = proc_cpu(drivers[1].pid)
    data = await run_burst(drivers, receivers, chars, 0, wait_s=chars / 100 + 30,
                           server=server)
    server_cpu = data["server_cpu_s"]
    listeners_cpu = proc_cpu(drivers[1].pid) - node0
    for d in drivers:
        await d.call("close")
    sent = data["sent"]
    first = sent["t"][0]
    final = sent["length"][-1]
    rates = []
    lost = 0
    for rec in data["watched"].values():
        got = [t for t, length in zip(rec["t"], rec["length"], strict=True) if length >= final]
        if got:
            rates.append(len(sent["t"]) / ((got[0] - first) / 1000))
        else:
            lost += 1
    send_rate = len(sent["t"]) / max((sent["t"][-1] - first) / 1000, 1e-6)
    duration = len(sent["t"]) / statistics.median(rates) if rates else math.nan
    return {"per_listener_ups": statistics.median(rates) if rates else math.nan,
            "slowest_listener_ups": min(rates) if rates else math.nan,
            "writer_ups": send_rate, "listeners_short": lost,
            "server_us_per_delivery": server_cpu * 1e6 / (chars * listeners),
            "server_cpu_s": server_cpu, "listeners_node_cpu_s": listeners_cpu,
            "duration_s": duration}


async def bench_throughput(opts: argparse.Namespace, tmp: Path, notebook: Notebook,
                           meter: Meter) -> dict[str, Any]:
    per: dict[str, list[dict[str, float]]] = {k: [] for k in SERVERS}
    async with server_pair(tmp, "throughput", meter) as servers, \
            node_drivers(meter) as drivers:
        for trial in range(opts.trials):
            for kind in orders(trial):
                row = await throughput_trial(servers[kind], drivers, notebook,
                                             opts.throughput_chars, opts.listeners)
                per[kind].append(row)
                progress(f"throughput trial {trial + 1}/{opts.trials} {kind}: "
                         f"{row['per_listener_ups']:.0f} updates/s per listener "
                         f"(writer sent {row['writer_ups']:.0f}/s; listeners' node CPU "
                         f"{row['listeners_node_cpu_s']:.1f} s over {row['duration_s']:.1f} s)")
    return summarise(per)


# --- 4. memory ------------------------------------------------------------------------------


class RawSink:
    """A minimal y-websocket client that receives the document and discards it."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.synced = asyncio.Event()
        #: when the server's SYNC step 2 came (``time.monotonic()``)
        self.synced_at = math.nan
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> RawSink:
        from websockets.asyncio.client import connect

        ws = await connect(url, max_size=None, open_timeout=120)
        sink = cls(ws)
        await ws.send(b"\x00\x00\x01\x00")  # SYNC step 1 with an empty state vector
        return sink

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                if frame[:2] == b"\x00\x00":  # the server's step 1: an empty step 2 back
                    await self.ws.send(b"\x00\x01\x02\x00\x00")
                elif frame[:2] == b"\x00\x01":
                    if not self.synced.is_set():
                        self.synced_at = time.monotonic()
                    self.synced.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.task.cancel()


async def add_synced_sinks(sinks: list[RawSink], urls: Sequence[str]) -> None:
    """A raw client per room URL, added to ``sinks``, ten at a time, each batch once every
    one of its clients holds its document."""
    for start in range(0, len(urls), 10):
        batch = await asyncio.gather(*(RawSink.open(url) for url in urls[start:start + 10]))
        sinks.extend(batch)
        await asyncio.wait_for(asyncio.gather(*(s.synced.wait() for s in batch)), 300)


async def memory_trial(kind: str, tmp: Path, trial: int, big: Notebook, clients: int,
                       settle: float, meter: Meter) -> dict[str, float]:
    async with fresh_server(kind, tmp, f"memory{trial}", meter) as server:
        sinks: list[RawSink] = []
        client = None
        try:
            await asyncio.sleep(settle)
            idle = server.memory()
            path = server.put_file(unique("memory"), big.data)
            client, _ = await open_notebook(server, path, big.cells)
            await asyncio.sleep(settle)
            loaded = server.memory()
            await add_synced_sinks(sinks, [server.room_url(server.session(path))] * (clients - 1))
            await asyncio.sleep(settle)
            connected = server.memory()
        finally:
            for sink in sinks:
                await sink.close()
            if client is not None:
                await client.close()
    return {"idle_mb": idle["VmRSS"], "room_loaded_mb": loaded["VmRSS"],
            "peak_loading_mb": loaded["VmHWM"], "clients_mb": connected["VmRSS"],
            "per_room_mb": loaded["VmRSS"] - idle["VmRSS"],
            "per_connection_kb": (connected["VmRSS"] - loaded["VmRSS"]) * 1024 / (clients - 1),
            "peak_mb": connected["VmHWM"]}


async def bench_memory(opts: argparse.Namespace, tmp: Path, big: Notebook,
                       meter: Meter) -> dict[str, Any]:
    per: dict[str, list[dict[str, float]]] = {k: [] for k in SERVERS}
    for trial in range(opts.memory_trials):
        for kind in orders(trial):
            row = await memory_trial(kind, tmp, trial, big, opts.memory_clients, opts.settle,
                                     meter)
            per[kind].append(row)
            progress(f"memory trial {trial + 1}/{opts.memory_trials} {kind}: idle "
                     f"{row['idle_mb']:.0f} MB, +room {row['per_room_mb']:.0f} MB, "
                     f"+{opts.memory_clients - 1} clients "
                     f"{row['clients_mb'] - row['room_loaded_mb']:.0f} MB")
    return summarise(per)


# --- 5. saving ------------------------------------------------------------------------------


async def wait_on_disk(path: Path, marker: bytes, timeout: float = 30) -> float:
    """Poll the file every 2 ms until it holds ``marker``; the monotonic time it did."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            stat = path.stat()
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if signature != last:
                last = signature
                if marker in path.read_bytes():
                    return time.monotonic()
        await asyncio.sleep(0.002)
    raise TimeoutError(f"{path.name} did not get the edit within {timeout} s")


async def bench_save(opts: argparse.Namespace, tmp: Path, notebook: Notebook,
                     meter: Meter) -> dict[str, Any]:
    from jupyter_ydjango.protocol.messages import write_var_string, write_var_uint

    autosave: dict[str, list[float]] = {k: [] for k in SERVERS}
    explicit: dict[str, list[float]] = {k: [] for k in SERVERS}
    statuses: dict[str, list[str]] = {k: [] for k in SERVERS}
    async with server_pair(tmp, "save", meter) as servers:
        for trial in range(opts.trials):
            for kind in orders(trial):
                server = servers[kind]
                path = server.put_file(unique("save"), notebook.data)
                client, _ = await open_notebook(server, path, notebook.cells)
                file = server.root / path
                await asyncio.sleep(1.5)  # whatever the load started is over
                source = client.model.ycells[TYPING_CELL]["source"]
                for _ in range(opts.save_edits):
                    marker = f"edit-{uuid.uuid4().hex}"
                    source.insert(len(source), marker)
                    t0 = time.monotonic()
                    t1 = await wait_on_disk(file, marker.encode())
                    autosave[kind].append((t1 - t0) * 1000)
                    await asyncio.sleep(1.5)
                for request_id in range(1, opts.save_edits + 1):
                    marker = f"save-{uuid.uuid4().hex}"
                    source.insert(len(source), marker)
                    await client.flush()
                    client.raw.clear()
                    t0 = time.monotonic()
                    await client.ws.send(b"\x02" + write_var_string("save")
                                         + write_var_uint(request_id))
                    reply = await client.wait_raw(lambda m, i=request_id: m.get("responseTo")
                                                  == i, timeout=60)
                    explicit[kind].append((time.monotonic() - t0) * 1000)
                    statuses[kind].append(reply.get("status"))
                    if marker.encode() not in file.read_bytes():
                        statuses[kind][-1] += " (file lacks the edit)"
                    await asyncio.sleep(1.5)
                await client.close()
                progress(f"save trial {trial + 1}/{opts.trials} {kind}: edit->disk "
                         f"{autosave[kind][-1]:.0f} ms, explicit save {explicit[kind][-1]:.0f}"
                         f" ms ({statuses[kind][-1]})")
    return {k: {"edit_to_disk_ms": summary(autosave[k]), "explicit_save_ms": summary(explicit[k]),
                "statuses": sorted(set(statuses[k]))} for k in SERVERS}


# --- 6. how cost grows ----------------------------------------------------------------------


def new_room_url(server: JupyterProcess, notebook: Notebook, prefix: str) -> str:
    """The websocket URL of a room of a new copy of ``notebook`` (the session PUT done)."""
    path = server.put_file(unique(prefix), notebook.data)
    return server.room_url(server.session(path))


async def scale_open_trial(kind: str, tmp: Path, label: str, notebook: Notebook,
                           settle: float, meter: Meter) -> dict[str, float]:
    """A cold open of ``notebook`` in a fresh server: its time, and the server's RSS idle,
    with the room loaded (the client still in it) and at its peak."""
    async with fresh_server(kind, tmp, label, meter) as server:
        await asyncio.sleep(settle)
        idle = server.memory()
        path = server.put_file(unique(f"scale/{notebook.cells}"), notebook.data)
        client, timing = await open_notebook(server, path, notebook.cells)
        try:
            await asyncio.sleep(settle)
            loaded = server.memory()
        finally:
            await client.close()
    return {"open_ms": timing["total_ms"], "server_ms": timing["server_ms"],
            "idle_mb": idle["VmRSS"], "loaded_mb": loaded["VmRSS"],
            "room_mb": loaded["VmRSS"] - idle["VmRSS"], "peak_mb": loaded["VmHWM"]}


async def bench_scale_open(opts: argparse.Namespace, tmp: Path, notebooks: list[Notebook],
                           meter: Meter) -> dict[str, Any]:
    """Cold open time and RSS against the notebook's size, a fresh server for each open."""
    per = {nb.cells: {k: [] for k in SERVERS} for nb in notebooks}
    for trial in range(opts.scale_trials):
        for nb in notebooks:
            for kind in orders(trial):
                row = await scale_open_trial(kind, tmp, f"scale-open{trial}-{nb.cells}", nb,
                                             opts.settle, meter)
                per[nb.cells][kind].append(row)
                progress(f"scale-open trial {trial + 1}/{opts.scale_trials} {nb.cells:,} cells "
                         f"{kind}: {row['open_ms']:.0f} ms, RSS {row['loaded_mb']:.0f} MB "
                         f"(+{row['room_mb']:.0f}), peak {row['peak_mb']:.0f} MB")
    return {str(nb.cells): {"mb": round(nb.mb, 3), **summarise(per[nb.cells])}
            for nb in notebooks}


async def rooms_trial(kind: str, tmp: Path, label: str, notebook: Notebook,
                      counts: list[int], settle: float, meter: Meter) -> dict[str, float]:
    """A fresh server's RSS idle, then with each of ``counts`` rooms loaded (copies of
    ``notebook``, each held open by one raw client that does nothing)."""
    async with fresh_server(kind, tmp, label, meter) as server:
        sinks: list[RawSink] = []
        try:
            await asyncio.sleep(settle)
            rss = {0: server.memory()["VmRSS"]}
            for count in counts:
                urls = [new_room_url(server, notebook, "rooms")
                        for _ in range(count - len(sinks))]
                await add_synced_sinks(sinks, urls)
                await asyncio.sleep(settle)
                rss[count] = server.memory()["VmRSS"]
        finally:
            await asyncio.gather(*(sink.close() for sink in sinks))
    most = max(counts)
    return {**{f"rss_{n}_mb": mb for n, mb in rss.items()},
            "per_room_kb": (rss[most] - rss[0]) * 1024 / most}


async def bench_scale_rooms(opts: argparse.Namespace, tmp: Path, notebook: Notebook,
                            meter: Meter) -> dict[str, Any]:
    """RSS against the number of idle rooms loaded, a fresh server per trial."""
    per: dict[str, list[dict[str, float]]] = {k: [] for k in SERVERS}
    for trial in range(opts.scale_trials):
        for kind in orders(trial):
            row = await rooms_trial(kind, tmp, f"scale-rooms{trial}", notebook,
                                    opts.scale_rooms, opts.settle, meter)
            per[kind].append(row)
            progress(f"scale-rooms trial {trial + 1}/{opts.scale_trials} {kind}: "
                     + ", ".join(f"{n} rooms {row[f'rss_{n}_mb']:.0f} MB"
                                 for n in [0, *opts.scale_rooms])
                     + f"; {row['per_room_kb']:.0f} kB per room")
    return {"rooms": [0, *opts.scale_rooms], "cells": notebook.cells,
            "mb": round(notebook.mb, 3), **summarise(per)}


# --- 7. no stall across rooms ---------------------------------------------------------------


async def timed_raw_open(server: JupyterProcess, path: str) -> tuple[RawSink, float, float]:
    """A cold open by a raw client (session PUT, websocket, SYNC): the client, and when the
    open started and when the server's step 2 came, in ms on the monotonic clock (the node
    drivers' clock)."""
    t0 = time.monotonic()
    sink = await RawSink.open(server.room_url(server.session(path)))
    await asyncio.wait_for(sink.synced.wait(), 300)
    return sink, t0 * 1000, sink.synced_at * 1000


async def type_during_open(server: JupyterProcess, drivers: list[Driver], big: Notebook,
                           interval_ms: float, margin_s: float,
                           ) -> tuple[dict[str, Any], float, float]:
    """The writer types a character every ``interval_ms`` from ``margin_s`` before a cold
    open of ``big`` until ``margin_s`` after it; what it sent, and the open's start and end
    (ms, monotonic)."""
    path = server.put_file(unique(f"stall/{big.cells}"), big.data)
    typing = asyncio.create_task(drivers[0].call(
        "type", id="w", cell=TYPING_CELL, count=int(600_000 / interval_ms),
        interval_ms=interval_ms, timeout=660))
    sink = None
    try:
        await asyncio.sleep(margin_s)
        sink, start, end = await timed_raw_open(server, path)
        await asyncio.sleep(margin_s)
    finally:
        await drivers[0].call("stop_typing", id="w")
        sent = await typing
        if sink is not None:
            await sink.close()
    return sent, start, end


def stall_figures(sent: dict[str, Any], watched: dict[str, Any], start: float,
                  end: float) -> dict[str, float]:
    """The delays of the characters sent before, during and after the open (``start`` to
    ``end``): p50, p99, max and samples of each group."""
    groups: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    lost = 0
    for t, row in zip(sent["t"], char_delays(sent, watched), strict=True):
        group = "before" if t < start else "during" if t <= end else "after"
        groups[group].extend(d for d in row if d is not None)
        lost += row.count(None)
    out = {"open_ms": end - start, "lost": lost, "writer_slip_ms": sent["slip_ms"]}
    for name, values in groups.items():
        out[f"{name}_samples"] = len(values)
        out[f"{name}_p50_ms"] = percentile(values, 50) if values else math.nan
        out[f"{name}_p99_ms"] = percentile(values, 99) if values else math.nan
        out[f"{name}_max_ms"] = max(values) if values else math.nan
    return out


async def stall_trial(server: JupyterProcess, drivers: list[Driver], notebook: Notebook,
                      big: Notebook, opts: argparse.Namespace) -> dict[str, float]:
    """A typist and its receivers in a room of ``notebook`` while ``big`` cold-opens in
    another room of the same server."""
    path = server.put_file(unique("stall/typist"), notebook.data)
    receivers = split_receivers(opts.stall_receivers, 2, writer_driver_share=True)
    await connect_clients(server, drivers, path, 0, receivers)
    await warm_up_and_watch(drivers, receivers)
    sent, start, end = await type_during_open(server, drivers, big, opts.stall_interval_ms,
                                              opts.stall_margin_s)
    await wait_received(drivers, receivers, sent["length"][-1], wait_s=10)
    watched = await watched_by(drivers, receivers)
    for d in drivers:
        await d.call("close")
    return stall_figures(sent, watched, start, end)


async def bench_stall(opts: argparse.Namespace, tmp: Path, notebook: Notebook, big: Notebook,
                      meter: Meter) -> dict[str, Any]:
    """Typing in one room while a big notebook cold-opens in another, on each server."""
    per: dict[str, list[dict[str, float]]] = {k: [] for k in SERVERS}
    async with server_pair(tmp, "stall", meter) as servers, node_drivers(meter) as drivers:
        for trial in range(opts.stall_trials):
            for kind in orders(trial):
                row = await stall_trial(servers[kind], drivers, notebook, big, opts)
                per[kind].append(row)
                progress(f"stall trial {trial + 1}/{opts.stall_trials} {kind}: open "
                         f"{row['open_ms']:.0f} ms; typing p99 before {row['before_p99_ms']:.1f}"
                         f", during {row['during_p99_ms']:.1f} (max {row['during_max_ms']:.1f},"
                         f" {row['during_samples']} samples), after {row['after_p99_ms']:.1f} ms")
    return {"cells": big.cells, "receivers": opts.stall_receivers,
            "interval_ms": opts.stall_interval_ms, **summarise(per)}


# --- report ---------------------------------------------------------------------------------


def ratio(ours: dict[str, Any] | None, theirs: dict[str, Any] | None) -> float:
    if not ours or not theirs or not ours["n"] or not theirs["n"] or not theirs["median"]:
        return math.nan
    return ours["median"] / theirs["median"]


def rows_of(results: dict[str, Any], clients: int) -> list[dict[str, Any]]:
    """The figures of the main table: ``{section, name, unit, better, ours, theirs}``."""
    rows: list[dict[str, Any]] = []

    def add(section: str, name: str, unit: str, ours: Any, theirs: Any,
            better: str = "lower", digits: int = 1) -> None:
        rows.append({"section": section, "name": name, "unit": unit, "better": better,
                     "digits": digits, US: ours, THEM: theirs, "ratio": ratio(ours, theirs)})

    for label, r in results.get("open", {}).items():
        add("cold open", f"{label} ({r['mb']:.2f} MB)", "ms", r["cold"][US]["total_ms"],
            r["cold"][THEM]["total_ms"])
    for label, r in results.get("open", {}).items():
        add("warm open", label, "ms", r["warm"][US], r["warm"][THEM])
    for n, r in results.get("fanout", {}).items():
        for key in ("p50_ms", "p99_ms", "max_ms"):
            add("fan-out", f"{n} clients {key[:-3]}", "ms", r[US][key], r[THEM][key], digits=2)
        add("fan-out", f"{n} clients lost", "pairs", r[US]["lost"], r[THEM]["lost"], digits=0)
    if "throughput" in results:
        r = results["throughput"]
        add("throughput", "per listener (median)", "updates/s", r[US]["per_listener_ups"],
            r[THEM]["per_listener_ups"], better="higher", digits=0)
        add("throughput", "slowest listener", "updates/s", r[US]["slowest_listener_ups"],
            r[THEM]["slowest_listener_ups"], better="higher", digits=0)
    if "memory" in results:
        r = results["memory"]
        for key, name in (("idle_mb", "RSS idle"), ("room_loaded_mb", "RSS 5,000-cell room"),
                          ("clients_mb", f"RSS with {clients} clients"),
                          ("per_room_mb", "per room"),
                          ("peak_loading_mb", "peak RSS while loading"),
                          ("per_connection_kb", "per connection")):
            unit = "kB" if key.endswith("kb") else "MB"
            add("memory", name, unit, r[US][key], r[THEM][key], digits=0)
    if "save" in results:
        r = results["save"]
        add("save", "edit -> on disk (1 s debounce)", "ms", r[US]["edit_to_disk_ms"],
            r[THEM]["edit_to_disk_ms"], digits=0)
        add("save", "explicit save (request -> reply)", "ms", r[US]["explicit_save_ms"],
            r[THEM]["explicit_save_ms"], digits=0)
    if "scale-rooms" in results:
        r = results["scale-rooms"]
        add("idle rooms", f"RSS per room ({max(r['rooms'])} rooms of {r['cells']:,} cells, "
            "a client in each)", "kB", r[US]["per_room_kb"], r[THEM]["per_room_kb"], digits=0)
    if "stall" in results:
        r = results["stall"]
        for key, name in (("before_p99_ms", "p99 before"), ("during_p99_ms", "p99 during"),
                          ("during_max_ms", "max during")):
            add("stall", f"typing in another room, {name} a {r['cells']:,}-cell open", "ms",
                r[US][key], r[THEM][key])
    return rows


def main_table(rows: list[dict[str, Any]]) -> str:
    lines = []
    for row in rows:
        name = row["name"]
        r = row["ratio"]
        if math.isnan(r):
            verdict = "-"
        elif row["better"] == "lower":
            verdict = f"{r:.2f}" + (f" ({1 / r:.1f}x better)" if 0 < r < 1 else "")
        else:
            verdict = f"{r:.2f}" + (f" ({r:.1f}x better)" if r > 1 else "")
        lines.append([f"{row['section']}: {name} [{row['unit']}]",
                      fmt_spread(row[US], row["digits"]), fmt_spread(row[THEM], row["digits"]),
                      verdict])
    return table("us vs jupyter-collaboration: median (min-max over trials)",
                 ["figure", US, THEM, "us / them"], lines)


def _median(results: dict[str, Any], *path: str) -> float:
    node: Any = results
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return math.nan
        node = node[key]
    return node["median"] if node and node.get("n") else math.nan


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The goals, each as ours against jupyter-collaboration's figure of this run: the ratio
    (or, where a goal is absolute, our figure) and whether it is met."""
    out = []

    def add(name: str, ours: float, them: float, goal: str, met: bool) -> None:
        known = not (math.isnan(ours) or math.isnan(them))
        out.append({"target": name, "ours": ours, "them": them,
                    "ratio": ours / them if known and them else math.nan, "goal": goal,
                    "met": met if known else None})

    def both(section: str, *path: str) -> tuple[float, float]:
        """Our and their median of ``results[section][*path[:-1]][server][path[-1]]``."""
        return (_median(results, section, *path[:-1], US, path[-1]),
                _median(results, section, *path[:-1], THEM, path[-1]))

    for label in results.get("open") or {}:
        ours = _median(results, "open", label, "cold", US, "total_ms")
        them = _median(results, "open", label, "cold", THEM, "total_ms")
        if label == "generated 5,000 cells":
            add(f"cold open, {label} [ms]", ours, them, "<= 0.33 and < 500 ms",
                ours <= them / 3 and ours < 500)
        elif label == "generated 1,000 cells":
            add(f"cold open, {label} [ms]", ours, them, "<= 0.33", ours <= them / 3)
        elif label.startswith("pdsh-"):
            add(f"cold open, {label[:28]} [ms]", ours, them, "<= 0.8", ours <= 0.8 * them)
    ours = _median(results, "open", "generated 1,000 cells", "warm", US)
    them = _median(results, "open", "generated 1,000 cells", "warm", THEM)
    add("warm open, 1,000 cells [ms]", ours, them, "<= 1.0", ours <= them)
    for n in ("50", "100"):
        ours, them = both("fanout", n, "p99_ms")
        add(f"fan-out p99, {n} clients [ms]", ours, them, "<= 0.5", ours <= them / 2)
    ours, them = both("memory", "per_room_mb")
    add("RSS added by a 5,000-cell room [MB]", ours, them, "<= 0.33", ours <= them / 3)
    ours, them = both("memory", "per_connection_kb")
    add("RSS per connection [kB]", ours, them, "<= 1.0", ours <= them)
    ours, them = both("throughput", "per_listener_ups")
    add("throughput per listener [updates/s]", ours, them, ">= 2", ours >= 2 * them)
    ours, them = both("save", "edit_to_disk_ms")
    add("edit -> file on disk [ms]", ours, them, "<= 0.9", ours <= 0.9 * them)
    ours, them = both("stall", "during_p99_ms")
    add("typing p99 in another room during a 5,000-cell open [ms]", ours, them, "< 20 ms",
        ours < 20)
    return out


def targets_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for t in items:
        verdict = {True: "met", False: "MISSED", None: "-"}[t["met"]]
        rows.append([t["target"], f"{t['ours']:.1f}", f"{t['them']:.1f}", f"{t['ratio']:.2f}",
                     t["goal"], verdict])
    return table("Goals (ours / theirs in this run; shown, not asserted)",
                 ["goal", US, THEM, "ratio", "goal", ""], rows)


def cpu_table(cpu: dict[str, dict[str, Any]]) -> str:
    rows = []
    for section, c in cpu.items():
        rows.append([section, f"{c['wall_s']:.1f}", f"{c['bench_cpu_s']:.1f}",
                     f"{c['node_cpu_s']:.1f}", f"{c['server_cpu_s'][US]:.1f}",
                     f"{c['server_cpu_s'][THEM]:.1f}",
                     " -> ".join(f"{x:.2f}" for x in c["load_1min"])])
    return table("CPU time per section [s] (clients: bench = this process, pycrdt "
                 "clients; node = Yjs clients)",
                 ["section", "wall", "bench CPU", "node CPU", f"{US} CPU", f"{THEM} CPU",
                  "load 1 min"], rows)


def open_table(results: dict[str, Any]) -> str:
    rows = []
    for label, r in results.items():
        for k in SERVERS:
            c = r["cold"][k]
            rows.append([f"{label} / {k}", fmt_spread(c["total_ms"]), fmt_spread(c["put_ms"]),
                         fmt_spread(c["server_ms"]), fmt_spread(c["client_apply_ms"]),
                         fmt_spread(r["server_cpu_ms"][k], 0),
                         "yes" if r["same_content"] else "NO"])
    return table(
        "Cold open, split [ms]: PUT; websocket + server load + answer until the step 2 "
        "frame arrived; client applying it (pycrdt)",
        ["notebook / server", "total", "PUT", "server", "client apply", "server CPU ms",
         "same cells"], rows)


def fanout_table(title: str, results: dict[str, Any]) -> str:
    rows = []
    for n, r in results.items():
        for k in SERVERS:
            x = r[k]
            rows.append([f"{n} clients / {k}", *(fmt_spread(x[key], 2) for key in (
                "p50_ms", "p99_ms", "max_ms", "first_ms", "spread_ms")),
                fmt_spread(x["lost"], 0), fmt_spread(x["samples"], 0),
                fmt_spread(x["writer_slip_ms"], 1), fmt_spread(x["server_us_per_delivery"], 0),
                sum(x.get("failed", {}).get("values", []))])
    return table(
        f"{title}: one writer, a character every 50 ms (first: the first receiver's delay, "
        "spread: until the last one's, medians over the characters; failed: trials in which "
        "the server dropped a client before it synced, left out of the other columns)",
        ["clients / server", "p50 ms", "p99 ms", "max ms", "first ms", "spread ms", "lost",
         "samples", "writer slip ms", "server CPU us/delivery", "failed"], rows)


def throughput_table(results: dict[str, Any]) -> str:
    rows = []
    for k in SERVERS:
        x = results[k]
        rows.append([k, *(fmt_spread(x[key], 0) for key in (
            "per_listener_ups", "slowest_listener_ups", "writer_ups")),
            fmt_spread(x["duration_s"], 2), fmt_spread(x["server_cpu_s"], 2),
            fmt_spread(x["server_us_per_delivery"], 0), fmt_spread(x["listeners_node_cpu_s"], 2),
            fmt_spread(x["listeners_short"], 0)])
    return table("Throughput: one writer as fast as it can, listeners",
                 ["server", "per listener /s", "slowest /s", "writer sent /s", "delivery s",
                  "server CPU s", "server CPU us/delivery", "listeners node CPU s", "short"],
                 rows)


def save_table(results: dict[str, Any]) -> str:
    rows = [[k, ", ".join(results[k]["statuses"])] for k in SERVERS]
    return table("Explicit save replies", ["server", "statuses"], rows)


def stall_table(results: dict[str, Any]) -> str:
    rows = []
    for k in SERVERS:
        x = results[k]
        rows.append([k, fmt_spread(x["open_ms"], 0), fmt_spread(x["before_p99_ms"]),
                     fmt_spread(x["during_samples"], 0),
                     *(fmt_spread(x[f"during_{key}_ms"]) for key in ("p50", "p99", "max")),
                     fmt_spread(x["after_p99_ms"]), fmt_spread(x["after_max_ms"]),
                     fmt_spread(x["lost"], 0), fmt_spread(x["writer_slip_ms"])])
    return table(
        f"No stall across rooms: a character every {results['interval_ms']:g} ms to "
        f"{results['receivers']} receivers while a {results['cells']:,}-cell notebook "
        "cold-opens in another room; delays [ms] of the characters sent before, during and "
        "after the open",
        ["server", "open ms", "before p99", "during samples", "during p50", "during p99",
         "during max", "after p99", "after max", "lost", "writer slip"], rows)


def detail_tables(results: dict[str, Any]) -> str:
    """The tables of each section that ran, after the main one."""
    makers = {"open": open_table, "fanout": lambda r: fanout_table("Fan-out", r),
              "throughput": throughput_table, "save": save_table,
              "scale-fanout": lambda r: fanout_table("Fan-out by clients", r),
              "stall": stall_table}
    return "\n".join(make(results[section]) for section, make in makers.items()
                     if section in results)


# --- the chart ------------------------------------------------------------------------------


def _label(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def plot_comparison(data: dict[str, Any], png: Path) -> None:
    """Draw the chart of the main table's figures (needs matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = ("lost", "per connection", "peak RSS", "slowest listener")
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        if not any(word in row["name"] for word in skip):
            groups.setdefault(f"{row['section']} [{row['unit']}]", []).append(row)
    heights = [0.9 + 0.42 * len(rows) for rows in groups.values()]
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, sum(heights) + 1.2),
                             gridspec_kw={"height_ratios": heights})
    axes = [axes] if len(groups) == 1 else list(axes)
    colours = {US: "#2b7bba", THEM: "#e07b39"}
    width = 0.4
    for ax, (title, rows) in zip(axes, groups.items(), strict=True):
        def stat(row: dict[str, Any], kind: str, key: str) -> float:
            s = row[kind]
            return s[key] if s and s["n"] else 0.0

        for j, kind in enumerate(SERVERS):
            med = [stat(r, kind, "median") for r in rows]
            err = [[m - stat(r, kind, "min") for m, r in zip(med, rows, strict=True)],
                   [stat(r, kind, "max") - m for m, r in zip(med, rows, strict=True)]]
            ys = [i + (j - 0.5) * width for i in range(len(rows))]
            ax.barh(ys, med, height=width, xerr=err, color=colours[kind], label=kind,
                    capsize=2, error_kw={"elinewidth": 0.8})
            for y, m, hi in zip(ys, med, err[1], strict=True):
                ax.text(m + hi, y, f" {_label(m)}", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([r["name"] for r in rows], fontsize=8)
        ax.invert_yaxis()
        for i, r in enumerate(rows):
            if not math.isnan(r["ratio"]):
                ax.annotate(f"us/them {r['ratio']:.2f}", xy=(1.0, i), xycoords=("axes fraction",
                            "data"), xytext=(4, 0), textcoords="offset points", va="center",
                            fontsize=7)
        better = rows[0]["better"]
        ax.set_title(f"{title}, {better} is better", fontsize=9, loc="left")
        values = [stat(r, k, "median") for r in rows for k in SERVERS]
        positive = [v for v in values if v > 0]
        if positive and max(positive) / min(positive) > 30:
            ax.set_xscale("log")
        ax.margins(x=0.12)
        ax.tick_params(axis="x", labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    meta = data["meta"]
    version = meta["versions"][THEM]["jupyter-collaboration"]
    fig.legend(handles, labels, loc="upper right", fontsize=8, ncol=2)
    fig.suptitle(f"jupyter-ydjango vs jupyter-collaboration {version}: median, bars min-max "
                 f"over trials\n{meta['mode']} run {meta['date'][:16]}, {meta['cpus']} CPUs, "
                 f"load average {meta['load_1min_before']:.2f} at the start", fontsize=9,
                 x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 0.93, 0.97))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


# --- how cost grows: series, table, chart ---------------------------------------------------


def series_of(panel: str, name: str, unit: str, x_name: str, xs: list[int],
              ours: list[dict[str, Any]], theirs: list[dict[str, Any]],
              digits: int) -> dict[str, Any]:
    """One line of the scaling chart: a figure of both servers at each x."""
    return {"panel": panel, "name": name, "unit": unit, "x_name": x_name, "x": xs,
            "digits": digits, US: ours, THEM: theirs}


def scaling_series(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The figures of how cost grows, from the scale sections that ran."""
    out = []
    if "scale-open" in results:
        r = results["scale-open"]
        xs = [int(cells) for cells in r]
        for key, panel, name, unit in (
                ("open_ms", "Cold open by notebook size", "cold open", "ms"),
                ("loaded_mb", "Server RSS by notebook size", "RSS, room loaded", "MB"),
                ("peak_mb", "Server RSS by notebook size", "peak RSS while opening", "MB")):
            out.append(series_of(panel, name, unit, "cells", xs, [r[c][US][key] for c in r],
                                 [r[c][THEM][key] for c in r], 0))
    if "scale-rooms" in results:
        r = results["scale-rooms"]
        keys = [f"rss_{n}_mb" for n in r["rooms"]]
        out.append(series_of(
            f"Server RSS by idle rooms loaded ({r['cells']:,} cells, a client in each)",
            "RSS", "MB", "rooms", r["rooms"], [r[US][k] for k in keys],
            [r[THEM][k] for k in keys], 0))
    if "scale-fanout" in results:
        r = results["scale-fanout"]
        xs = [int(n) for n in r]
        for key in ("p99_ms", "p50_ms"):
            out.append(series_of("Fan-out delay by clients in the room", f"fan-out {key[:3]}",
                                 "ms", "clients", xs, [r[n][US][key] for n in r],
                                 [r[n][THEM][key] for n in r], 1))
    return out


def scaling_table(series: list[dict[str, Any]]) -> str:
    rows = []
    for s in series:
        for i, x in enumerate(s["x"]):
            ours, theirs = s[US][i], s[THEM][i]
            r = ratio(ours, theirs)
            rows.append([f"{s['name']} [{s['unit']}]", f"{x:,} {s['x_name']}",
                         fmt_spread(ours, s["digits"]), fmt_spread(theirs, s["digits"]),
                         "-" if math.isnan(r) else f"{r:.2f}"])
    return table("How cost grows: median (min-max over trials)",
                 ["figure", "at", US, THEM, "us / them"], rows)


def plot_scaling(data: dict[str, Any], png: Path) -> None:
    """Draw the scaling chart: a panel per kind of figure, a line per server and figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[dict[str, Any]]] = {}
    for s in data["scaling"]:
        panels.setdefault(s["panel"], []).append(s)
    cols = min(2, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.2 * rows + 0.8), squeeze=False)
    colours = {US: "#2b7bba", THEM: "#e07b39"}
    for ax, (title, lines) in zip(axes.flat, panels.items(), strict=False):
        for style, marker, s in zip(("-", "--", ":"), "os^", lines, strict=False):
            for kind in SERVERS:
                points = [(x, p) for x, p in zip(s["x"], s[kind], strict=True) if p["n"]]
                xs = [x for x, _ in points]
                med = [p["median"] for _, p in points]
                err = [[p["median"] - p["min"] for _, p in points],
                       [p["max"] - p["median"] for _, p in points]]
                label = kind if len(lines) == 1 else f"{kind}: {s['name']}"
                ax.errorbar(xs, med, yerr=err, color=colours[kind], linestyle=style,
                            marker=marker, markersize=4, capsize=2, label=label)
        xs = [x for s in lines for x in s["x"]]
        if min(xs) > 0 and max(xs) / min(xs) >= 10:
            ax.set_xscale("log")
        ax.set_xticks(sorted(set(xs)))
        ax.set_xticklabels([f"{x:,}" for x in sorted(set(xs))], fontsize=7)
        ax.set_xlabel(lines[0]["x_name"], fontsize=8)
        ax.set_ylabel(lines[0]["unit"], fontsize=8)
        ys = [p["median"] for s in lines for k in SERVERS for p in s[k] if p["n"]]
        if ys and min(ys) > 0 and max(ys) / min(ys) > 30:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"{title}, lower is better", fontsize=9, loc="left")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    meta = data["meta"]
    version = meta["versions"][THEM]["jupyter-collaboration"]
    fig.suptitle(f"How cost grows: jupyter-ydjango vs jupyter-collaboration {version}, median, "
                 f"bars min-max over trials\n{meta['mode']} run {meta['date'][:16]}, "
                 f"{meta['cpus']} CPUs, load average {meta['load_1min_before']:.2f} at the start",
                 fontsize=9, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def plot_all(data: dict[str, Any], png: Path, scaling_png: Path) -> list[Path]:
    """Draw the charts the results have figures for; the files written."""
    written = []
    if data["rows"]:
        plot_comparison(data, png)
        written.append(png)
    if data["scaling"]:
        plot_scaling(data, scaling_png)
        written.append(scaling_png)
    return written


def draw_charts(json_path: Path, png: Path, scaling_png: Path) -> list[Path]:
    """Draw the charts here if matplotlib is importable, else with the other environment."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([str(jc_python()), __file__, "--plot", str(json_path), str(png),
                        str(scaling_png)], check=True)
        data = json.loads(json_path.read_text())
        return [p for p, figures in ((png, data["rows"]), (scaling_png, data["scaling"]))
                if figures]
    return plot_all(json.loads(json_path.read_text()), png, scaling_png)


# --- main -----------------------------------------------------------------------------------


def git_commit() -> str:
    """The checkout's commit, marked ``+changes`` if the package has uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "jupyter_ydjango"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + (" +changes" if dirty.strip() else "")


def wait_for_load(limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until the 1-minute load average is below ``limit``."""
    deadline = time.monotonic() + max_wait
    load = loadavg()
    while load >= limit and time.monotonic() < deadline:
        progress(f"load average {load:.2f} >= {limit}: waiting")
        time.sleep(20)
        load = loadavg()
    return load


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer trials and smaller bursts (~8 min)")
    parser.add_argument("--trials", type=int, help="trials of opens, throughput, saves "
                        "(default 5, quick 2)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections to run (default: all)")
    parser.add_argument("--scale-cells", type=int_list, default=[100, 1000, 3000, 10000],
                        metavar="N,N,...", help="notebook sizes of scale-open")
    parser.add_argument("--scale-rooms", type=int_list, default=[1, 50, 200],
                        metavar="N,N,...", help="idle rooms of scale-rooms, in increasing order")
    parser.add_argument("--scale-clients", type=int_list, default=[10, 50, 100, 200],
                        metavar="N,N,...", help="clients per room of scale-fanout")
    parser.add_argument("--json", type=Path, default=RESULTS_JSON)
    parser.add_argument("--png", type=Path, default=RESULTS_PNG)
    parser.add_argument("--scaling-png", type=Path, default=RESULTS_SCALING_PNG)
    parser.add_argument("--wait-load", type=float, default=None, metavar="LOAD",
                        help="first wait (up to --max-wait s) until the 1-minute load average "
                        "is below LOAD (default: 1.0 for a full run, no wait with --quick)")
    parser.add_argument("--max-wait", type=float, default=900)
    parser.add_argument("--plot", nargs=3, type=Path, metavar=("JSON", "PNG", "SCALING_PNG"),
                        help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    opts.sections = benchlib.chosen(parser, opts.only, SECTIONS, "sections")
    quick = opts.quick
    opts.mode = "quick" if quick else "full"
    opts.trials = opts.trials or (2 if quick else 5)
    opts.fanout_trials = 1 if quick else min(opts.trials, 3)
    opts.fanout_clients = [10, 50, 100]
    opts.fanout_chars = 60 if quick else 150
    opts.interval_ms = 50
    opts.listeners = 10
    opts.throughput_chars = 1000 if quick else 2000
    opts.memory_trials = 1 if quick else 3
    opts.memory_clients = 100
    opts.save_edits = 1 if quick else 2
    opts.settle = 1.0 if quick else 2.0
    opts.sizes = [100, 1000, 5000]
    opts.fixtures = not quick
    opts.scale_trials = opts.memory_trials
    opts.stall_trials = 1 if quick else 3
    opts.stall_cells = 5000
    opts.stall_receivers = 5
    opts.stall_interval_ms = 25
    opts.stall_margin_s = 1.0
    if opts.wait_load is None and not quick:
        opts.wait_load = 1.0
    return opts


def section_notebooks(opts: argparse.Namespace) -> dict[str, list[int]]:
    """The sizes (cells) of the generated notebooks each section uses."""
    return {"memory": [5000], "open": opts.sizes, "fanout": [100], "throughput": [100],
            "save": [1000], "scale-open": opts.scale_cells, "scale-rooms": [100],
            "scale-fanout": [100], "stall": [100, opts.stall_cells]}


Runner = Callable[[Meter, list[Notebook]], Awaitable[dict[str, Any]]]


def section_runners(opts: argparse.Namespace, tmp: Path) -> dict[str, Runner]:
    """What each section runs, given its CPU meter and its notebooks."""
    return {
        "memory": lambda meter, nbs: bench_memory(opts, tmp, nbs[0], meter),
        "open": lambda meter, nbs: bench_open(
            opts, tmp, nbs + (fixture_notebooks() if opts.fixtures else []), meter),
        "fanout": lambda meter, nbs: bench_fanout(opts, tmp, nbs[0], meter,
                                                  opts.fanout_clients, "fan-out"),
        "throughput": lambda meter, nbs: bench_throughput(opts, tmp, nbs[0], meter),
        "save": lambda meter, nbs: bench_save(opts, tmp, nbs[0], meter),
        "scale-open": lambda meter, nbs: bench_scale_open(opts, tmp, nbs, meter),
        "scale-rooms": lambda meter, nbs: bench_scale_rooms(opts, tmp, nbs[0], meter),
        "scale-fanout": lambda meter, nbs: bench_fanout(opts, tmp, nbs[0], meter,
                                                        opts.scale_clients, "scale-fanout"),
        "stall": lambda meter, nbs: bench_stall(opts, tmp, nbs[0], nbs[1], meter),
    }


async def run(opts: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    cpu: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="ydjango-compare-") as tmp_name:
        tmp = Path(tmp_name)
        runners = section_runners(opts, tmp)
        sizes = section_notebooks(opts)
        for section in opts.sections:
            notebooks = [generated(n) for n in sizes[section]]
            meter = Meter()
            progress(f"section {section}")
            try:
                results[section] = await runners[section](meter, notebooks)
            except Exception:
                logs = sorted(tmp.glob("*/server.log"))
                keep = Path(tempfile.mkdtemp(prefix="ydjango-compare-logs-"))
                for log in logs:
                    shutil.copy(log, keep / f"{log.parent.name}.log")
                progress(f"section {section} failed; server logs kept in {keep}")
                raise
            cpu[section] = meter.finish().as_dict()
    return {"results": results, "cpu": cpu}


def main(argv: list[str] | None = None) -> None:
    opts = options(argv)
    if opts.plot:
        plot_all(json.loads(opts.plot[0].read_text()), opts.plot[1], opts.plot[2])
        return
    sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT)]
    ensure_node_modules()
    versions = {THEM: ensure_jc_venv(), US: our_versions()}
    load_before = loadavg()
    if opts.wait_load:
        load_before = wait_for_load(opts.wait_load, opts.max_wait)
    started = time.monotonic()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = git_commit()
    progress(f"{opts.mode} run, load average {load_before:.2f}")
    out = asyncio.run(run(opts))
    results, cpu = out["results"], out["cpu"]
    rows = rows_of(results, opts.memory_clients)
    goals = targets(results)
    series = scaling_series(results)
    load_after = loadavg()
    meta = {
        "date": date, "mode": opts.mode, "duration_s": round(time.monotonic() - started, 1),
        "trials": opts.trials, "fanout_trials": opts.fanout_trials,
        "memory_trials": opts.memory_trials, "fanout_chars": opts.fanout_chars,
        "throughput_chars": opts.throughput_chars, "listeners": opts.listeners,
        "memory_clients": opts.memory_clients, "save_edits_per_trial": opts.save_edits,
        "scale_trials": opts.scale_trials, "stall_trials": opts.stall_trials,
        "load_1min_before": load_before, "load_1min_after": load_after,
        "cpus": os.cpu_count(), "machine": platform.platform(), "versions": versions,
        "commit": commit,
        "python": platform.python_version(),
    }
    report = "\n".join([
        f"jupyter-ydjango vs jupyter-collaboration "
        f"{versions[THEM]['jupyter-collaboration']} ({opts.mode} run, {date}, commit {commit}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.2f} before, {load_after:.2f} "
        f"after, {meta['duration_s']:.0f} s)", "",
        main_table(rows), targets_table(goals),
        *([scaling_table(series)] if series else []), detail_tables(results), cpu_table(cpu)])
    print(report)
    data = {"meta": meta, "report": report, "rows": rows, "targets": goals,
            "scaling": series, "results": results, "cpu": cpu}
    opts.json.parent.mkdir(parents=True, exist_ok=True)
    opts.json.write_text(json.dumps(data, indent=1, default=str) + "\n")
    try:
        charts = draw_charts(opts.json, opts.png, opts.scaling_png)
        progress(f"wrote {', '.join(str(p) for p in [opts.json, *charts])}")
    except Exception as exc:
        progress(f"wrote {opts.json}; no chart: {exc!r}")


if __name__ == "__main__":
    main()
