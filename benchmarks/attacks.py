"""What hostile clients cost: the attacks of ``tests/jupyter/test_attacks.py``, measured
against jupyter_ydjango and against jupyter-collaboration 5.0 in the same run.

    python benchmarks/attacks.py [--trials 1] [--only queries,flood] [--json PATH]

Run it with the project's interpreter (the project installed with its test extras). Our
server is ``jupyter server`` with jupyter_ydjango in embedded mode (this interpreter, default
settings); the peer is ``jupyter server`` with jupyter-collaboration 5.0 from
``benchmarks/.venv-jc`` (made by ``compare.py``'s ``ensure_jc_venv``). Both run with the
tests' users (``tests/support/jupyter_auth.py``: a reader may only read). Each attack gets a
fresh server of each kind and a fresh room; the servers alternate from trial to trial.

While an attack runs (from a thread of this process, its frames built before the clock
starts), a typist types one character every 20 ms into a text file of its own room, from a
separate process, and a second client of that room times each keystroke (edit to receipt).
Per attack and per server, the table gives:

* typist median / slowest ms: keystroke latency from the start of the attack until five
  keystrokes after its end; never: keystrokes not received within 30 s;
* RSS before / peak / after MB: the server process's resident memory at the start of the
  attack, the highest of the samples taken every 50 ms until its end, and 5 s after its end;
* CPU s: the server's CPU time (user + system) during the attack; wall s: its duration;
* outcome: what the attacker got: the close code the server sent (with its name in
  ``jupyter_ydjango.protocol.close_codes``), or how many answers it got, or what a third
  client saw. "server died" or "wedged" (typing did not resume within 40 s) are outcomes too.

With several trials a figure reads ``median (min-max)``. This is a measurement, not a test:
it asserts nothing. Two attacks of the tests have no jupyter-collaboration equivalent and are
not run: the replayed identity header and the cross-site post with a Django login (both are
about the remote mode's Django service).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import benchlib
import psutil
from benchlib import ROOT, fmt_spread, loadavg, summary, table, write_json
from compare import (
    SERVERS,
    THEM,
    TOKEN,
    US,
    JupyterProcess,
    ensure_jc_venv,
    git_commit,
    orders,
    our_versions,
    wait_for_load,
)

sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT)]

import nbformat  # noqa: E402
import pycrdt  # noqa: E402
from frame_client import RawClient  # noqa: E402
from notebooks import generated_notebook  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from jupyter_ydjango.protocol import close_codes  # noqa: E402
from jupyter_ydjango.protocol.messages import (  # noqa: E402
    AwarenessEntry,
    Message,
    ProtocolError,
    YMessageType,
    create_awareness_message,
    create_query_awareness_message,
    create_raw_message,
    create_sync_step1_message,
    create_update_message,
    decode_awareness_update,
    decode_messages,
    encode_awareness_update,
    read_var_string,
    write_var_string,
    write_var_uint,
)

RESULTS_JSON = ROOT / "benchmarks" / "results" / "attacks.json"
#: The tests' users (``jupyter_auth.USERS``), loaded by both servers.
AUTH = ROOT / "tests" / "support" / "jupyter_auth.py"
AUTH_ARGS = ("--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
             "--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer")
READER, WRITER, EDITOR = "reader-token", "writer-token", "editor-token"
TEXT = {"format": "text", "type": "file"}
#: A keystroke not received within this many seconds is a "never".
NEVER = 30.0
#: After an attack: keystrokes that must arrive (within RESUME_CAP s) for the server to count
#: as answering, and the seconds after the attack's end at which RSS is read again.
RESUME_KEYS, RESUME_CAP, AFTER_S = 5, 40.0, 5.0
#: The tests' skipped attacks.
SKIPPED = ("replayed identity header (remote mode: the Django service's trust in the Jupyter "
           "server's header)", "cross-site post with a Django login (remote mode: the Django "
           "service's CSRF check)")
CODE_NAMES: dict[int, str] = {}
for _name, _value in vars(close_codes).items():
    if _name.isupper() and isinstance(_value, int):
        CODE_NAMES.setdefault(_value, _name)


def progress(text: str) -> None:
    benchlib.progress(f"attacks {time.strftime('%H:%M:%S')}", text)


def closed(code: int | None) -> str:
    """``closed 4429 TOO_MANY``."""
    return f"closed {code} {CODE_NAMES.get(code or 0, '')}".rstrip()


# --- the clients ----------------------------------------------------------------------------


async def dial(url: str, **options: Any) -> ClientConnection:
    """A websocket connection that does not ping: a server busy with an attack answers pings
    late (behind the frames before them), and a client must not give up on it for that."""
    return await connect(url, max_size=None, open_timeout=10, ping_interval=None, **options)


async def raw_client(url: str) -> RawClient:
    """A :class:`RawClient` on a connection of :func:`dial`."""
    return RawClient(await dial(url))


def label(message: Message) -> str:
    """A message's kind: ``SYNC_STEP2``, ``AWARENESS``, ``AUTH`` (permission denied), ``save
    success``... (a RAW answer to a save request)."""
    if message.type is YMessageType.SYNC and message.sync_type is not None:
        return message.sync_type.name
    if message.type is YMessageType.RAW:  # RAW and AUTH share the type
        with contextlib.suppress(ProtocolError, ValueError, IndexError):
            answer = json.loads(read_var_string(message.payload)[0])
            if isinstance(answer, dict) and answer.get("type") == "save":
                return f"save {answer.get('status')}"
    return message.type.name


class Probe:
    """A connection that counts what the server sends it, by kind, and keeps none of it: the
    attacker's side of most attacks (a server may answer 10,000 times with the document)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.counts: collections.Counter[str] = collections.Counter()
        self.sizes: collections.Counter[str] = collections.Counter()
        self.received = 0
        self.last = time.monotonic()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> Probe:
        return cls(await dial(url))

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                self.received += len(data)
                self.last = time.monotonic()
                try:
                    messages = decode_messages(data)
                except ProtocolError:
                    self.counts["undecodable"] += 1
                    continue
                for message in messages:
                    self.counts[label(message)] += 1
                    self.sizes[label(message)] += len(message.payload)

    @property
    def closed(self) -> bool:
        return self.ws.close_code is not None

    async def send(self, *frames: bytes) -> None:
        """Send ``frames``; stop quietly if the server closed the connection."""
        with contextlib.suppress(ConnectionClosed):
            for frame in frames:
                await self.ws.send(frame)

    async def until(self, done: Callable[[], bool], cap: float) -> bool:
        """Wait until ``done()``, the connection closes, or ``cap`` s; return ``done()``."""
        deadline = time.monotonic() + cap
        while not done() and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return done()

    async def handshake(self, cap: float = 30) -> None:
        await self.send(create_sync_step1_message(b"\x00"))
        if not await self.until(lambda: self.counts["SYNC_STEP2"] > 0, cap):
            raise TimeoutError(f"no SYNC step 2 in {cap} s")

    async def barrier(self, cap: float = 60) -> bool:
        """Send a SYNC step 1 and wait for its answer: the server has handled what came
        before. False if the connection closed or ``cap`` passed."""
        answers = self.counts["SYNC_STEP2"]
        await self.send(create_sync_step1_message(b"\x00"))
        return await self.until(lambda: self.counts["SYNC_STEP2"] > answers, cap)

    async def quiet(self, seconds: float = 2, cap: float = 60) -> None:
        """Wait until nothing arrived for ``seconds`` (from now on), or closed, or ``cap``."""
        self.last = time.monotonic()
        await self.until(lambda: time.monotonic() - self.last >= seconds, cap)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@contextlib.asynccontextmanager
async def probes(*urls: str) -> Any:
    """Open, handshake and finally close one :class:`Probe` per URL."""
    opened = [await Probe.open(url) for url in urls]
    try:
        for probe in opened:
            await probe.handshake()
        yield opened
    finally:
        for probe in opened:
            with contextlib.suppress(Exception):
                await probe.close()


async def type_until_stdin_closes(url: str) -> None:
    """The typist process: one keystroke every 20 ms, printed as ``sent-at latency`` (seconds,
    ``time.monotonic``, which all processes share) or ``sent-at never``."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)),
                     daemon=True).start()
    typist, watcher = await raw_client(url), await raw_client(url)
    try:
        await typist.handshake(30)
        await watcher.handshake(30)
        while not stop.is_set():
            mark = len(watcher.frames)
            start = time.monotonic()
            await typist.edit("k", name="source")
            wanted = len(typist.text("source"))
            try:
                await watcher.wait_for(lambda _m, n=wanted: len(watcher.text("source")) >= n, NEVER,
                                       start=mark)
                latency = f"{time.monotonic() - start:.6f}"
            except TimeoutError:
                latency = "never"
            print(f"{start:.6f} {latency}", flush=True)
            if typist.closed or watcher.closed:
                raise ConnectionError("the server closed the typist's connections")
            await asyncio.sleep(0.02)
    finally:
        await typist.close()
        await watcher.close()


class Typist:
    """The typist process, its keystrokes as they come: (sent at, latency or None)."""

    def __init__(self, url: str) -> None:
        self.keys: list[tuple[float, float | None]] = []
        self.error = ""
        self.proc = subprocess.Popen([sys.executable, __file__, "--typist", url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            sent, latency = line.split()
            self.keys.append((float(sent), None if latency == "never" else float(latency)))

    def wait_keys(self, count: int, cap: float) -> bool:
        """Wait until ``count`` keystrokes are in, up to ``cap`` s; whether they are."""
        deadline = time.monotonic() + cap
        while len(self.keys) < count and self.proc.poll() is None and (
                time.monotonic() < deadline):
            time.sleep(0.05)
        return len(self.keys) >= count

    def since(self, start: float) -> list[float | None]:
        """The latencies of the keystrokes still on their way at ``start`` or sent after."""
        return [lat for sent, lat in self.keys if sent + (NEVER if lat is None else lat) >= start]

    def stop(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(NEVER + 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode and self.proc.stderr:
            self.error = " ".join(self.proc.stderr.read().strip().splitlines()[-1:])[:200]


class Sampler(threading.Thread):
    """RSS of a process every 50 ms (psutil), from a thread: (time, MB)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), self.rss()))
            self._done.wait(0.05)

    def rss(self) -> float:
        return self.process.memory_info().rss / 2**20

    def peak(self, start: float, end: float, floor: float) -> float:
        """The highest sample from ``start`` to the first one after ``end``, and ``floor``."""
        after = next((mb for t, mb in self.samples if t > end), floor)
        return max([floor, after, *(mb for t, mb in self.samples if start <= t <= end)])

    def stop(self) -> None:
        self._done.set()
        self.join()


# --- the attacks ----------------------------------------------------------------------------


class Target:
    """The server an attack runs against, and the window it measures: from :meth:`begin`
    (once the attack's clients are connected and its frames built) to :meth:`end`."""

    def __init__(self, server: JupyterProcess) -> None:
        self.server = server
        self.begun = self.ended = math.nan
        self.cpu = [math.nan, math.nan]
        self.rss_before = math.nan

    def session(self, path: str, content: str = "") -> dict[str, Any]:
        """The session of a text file (made with ``content`` if it does not exist)."""
        file = self.server.root / path
        if not file.exists():
            file.write_text(content)
        return self.server.session(path, TEXT)

    def room(self, path: str, content: str = "", token: str = TOKEN) -> str:
        return self.server.room_url(self.session(path, content), token)

    def begin(self) -> None:
        self.begun, self.ended = time.monotonic(), math.nan
        self.cpu[0] = self.server.cpu()
        self.rss_before = psutil.Process(self.server.pid).memory_info().rss / 2**20

    def end(self, at: float | None = None) -> None:
        """The end of the window: now, or ``at`` (an earlier ``time.monotonic()``: the last
        answer, before a wait for more that did not come)."""
        if math.isnan(self.ended):
            self.ended = time.monotonic() if at is None else at
            self.cpu[1] = self.server.cpu()


@dataclass(frozen=True)
class Attack:
    name: str
    title: str
    run: Callable[[Target], Awaitable[dict[str, Any]]]
    cap: float = 90.0


ATTACKS: dict[str, Attack] = {}


def attack(name: str, title: str, cap: float = 90.0) -> Callable[..., Any]:
    def register(run: Callable[[Target], Awaitable[dict[str, Any]]]) -> Any:
        ATTACKS[name] = Attack(name, title, run, cap)
        return run
    return register


def answered(probe: Probe, kind: str, noun: str, less: int = 0) -> dict[str, Any]:
    """The outcome of an attack answered by messages of ``kind``: the close code if the
    server closed the connection, and how many answers came."""
    count = probe.counts[kind] - less
    said = f"{count:,} {noun}"
    if probe.closed:
        said = f"{closed(probe.ws.close_code)} ({said})"
    return {"outcome": said, "close_code": probe.ws.close_code, "answers": count,
            "received_mb": round(probe.received / 1e6, 2)}


@attack("queries", "one 1 MB frame of 1,000,000 QUERY_AWARENESS messages")
async def queries(t: Target) -> dict[str, Any]:
    frame = create_query_awareness_message() * 1_000_000
    async with probes(t.room("queried.txt", "queried")) as (probe,):
        t.begin()
        await probe.send(frame)
        await probe.barrier(60)  # its answers come before the barrier's
        t.end()
        return answered(probe, "AWARENESS", "awareness answers")


#: An update holding only a delete set (of an item no one made).
DELETE_SET_PROBE = create_update_message(b"\x00\x01" + write_var_uint(12345) + b"\x01\x00\x01")


@attack("probes", "9,000 delete-set probe updates in one frame, from a reader")
async def delete_set_probes(t: Target, frames: list[bytes] | None = None) -> dict[str, Any]:
    frames = frames or [DELETE_SET_PROBE * 9_000]
    info = t.session("probed.txt", "probed " * 10_000)
    url = t.server.room_url(info, READER)
    async with probes(url) as (probe,):
        t.begin()
        await probe.send(*frames)
        await probe.barrier(60)
        t.end()
        figures = answered(probe, "AUTH", "permission denials")
    # does the server let a reader write at all? (outside the measured window)
    reader, fresh = await raw_client(url), None
    try:
        await reader.handshake(30)
        await reader.edit("READER", name="source")
        with contextlib.suppress(TimeoutError):
            await reader.barrier(30)
        fresh = await raw_client(t.server.room_url(info))
        await fresh.handshake(30)
        figures["reader_edit_applied"] = fresh.text("source").endswith("READER")
    finally:
        for client in (reader, fresh):
            if client is not None:
                await client.close()
    figures["outcome"] += ("; a reader's edit is applied" if figures["reader_edit_applied"]
                           else "; a reader's edit is refused")
    return figures


@attack("probes-split", "the same 9,000 probes, one per frame (the test's second half)")
async def split_probes(t: Target) -> dict[str, Any]:
    return await delete_set_probes(t, [DELETE_SET_PROBE] * 9_000)


@attack("step1s", "10,000 SYNC step 1s with a stale state vector, one per frame")
async def step1s(t: Target) -> dict[str, Any]:
    stale = create_sync_step1_message(b"\x01\x09\x00")  # client 9 at clock 0: a real diff
    async with probes(t.room("synced.txt", "synced " * 10_000)) as (probe,):
        t.begin()
        for _ in range(10_000):
            await probe.send(stale)
        sent = time.monotonic()
        await probe.quiet(2, 60)  # until the answers stop coming
        t.end(at=max(sent, probe.last))
        figures = answered(probe, "SYNC_STEP2", "SYNC step 2 answers", less=1)
        figures["outcome"] += f", {probe.sizes['SYNC_STEP2'] / 1e6:,.0f} MB"
        return figures


@attack("saves", "1,000 save requests on a 300-cell notebook")
async def saves(t: Target) -> dict[str, Any]:
    nbformat.write(generated_notebook(300), t.server.root / "saved.ipynb")
    save = create_raw_message(write_var_string("save"))
    async with probes(t.server.room_url(t.server.session("saved.ipynb"))) as (probe,):

        def answers() -> int:
            return sum(n for kind, n in probe.counts.items() if kind.startswith("save "))

        start = t.server.cpu()
        for request in range(5):  # one at a time: what one save costs
            await probe.send(save + write_var_uint(request))
            await probe.until(lambda n=request: answers() > n, 30)
        one = (t.server.cpu() - start) / 5
        before = collections.Counter({k: n for k, n in probe.counts.items()
                                      if k.startswith("save ")})
        t.begin()
        await probe.send(*(save + write_var_uint(request) for request in range(5, 1_005)))
        everything = await probe.until(lambda: answers() >= 1_005, 60)
        t.end()
        statuses = {k[5:]: n - before[k] for k, n in probe.counts.items()
                    if k.startswith("save ") and n > before[k]}
        kinds = ", ".join(f"{n:,} {status}" for status, n in statuses.items()) or "none"
        said = f"{answers() - 5:,}/1,000 answered ({kinds})"
        if probe.closed:
            said = f"{closed(probe.ws.close_code)} after {answers() - 5:,} answers"
        elif not everything:
            said = f"{answers() - 5:,}/1,000 answered in 60 s ({kinds})"
        return {"outcome": f"{said}; one save: {one * 1000:.0f} ms CPU", "answers":
                answers() - 5, "statuses": statuses, "close_code": probe.ws.close_code,
                "one_save_cpu_s": round(one, 4)}


@attack("state", "a 30 MB awareness state")
async def big_state(t: Target) -> dict[str, Any]:
    state = json.dumps({"user": {"name": "x" * 30_000_000}})
    frame = create_awareness_message(encode_awareness_update([AwarenessEntry(77, 1, state)]))
    url = t.room("aware.txt", "aware")
    async with probes(url, url) as (attacker, peer):
        t.begin()
        await attacker.send(frame)
        await attacker.barrier(60)
        await peer.barrier(60)  # after what the server relayed to it
        t.end()
        relayed = peer.sizes["AWARENESS"] / 1e6
        said = closed(attacker.ws.close_code) if attacker.closed else "accepted"
        return {"outcome": f"{said}; another client of the room got {relayed:.0f} MB",
                "close_code": attacker.ws.close_code, "relayed_mb": round(relayed, 1)}


#: Megabytes that flow through the room of a client that never reads (the test's flood).
FLOOD_MB = 200


@attack("flood", f"a client that never reads while {FLOOD_MB} MB of updates flow", cap=300)
async def flood(t: Target) -> dict[str, Any]:
    url = t.room("flood.txt")
    sleeper = await dial(url, max_queue=1)
    await sleeper.send(create_sync_step1_message(b"\x00"))
    writer = await raw_client(url)
    try:
        await writer.handshake(30)
        t.begin()
        chunk = "f" * 1_000_000
        for sent in range(1, FLOOD_MB + 1):  # a megabyte inserted and deleted, 200 times
            await writer.edit(chunk, name="source")
            ytext = writer.doc.get("source", type=pycrdt.Text)
            with writer.doc.transaction():
                before = writer.doc.get_state()
                del ytext[0:len(chunk)]
            await writer.send(create_update_message(writer.doc.get_update(before)))
            if sent % 8 == 0:  # the test's pacing
                await writer.barrier(60)
                writer.frames.clear()  # a server may echo the flood to its writer
        await writer.barrier(60)
        t.end()
        # was the sleeper given up? (it reads now, to find out: up to 30 s)
        deadline = time.monotonic() + 30
        while sleeper.state.name != "CLOSED" and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sleeper.recv(), 0.5)
        if sleeper.state.name == "CLOSED":
            return {"outcome": f"the sleeper was {closed(sleeper.close_code)}",
                    "close_code": sleeper.close_code}
        return {"outcome": "the sleeper was not disconnected (in the flood and 30 s after)",
                "close_code": None}
    finally:
        await writer.close()
        await sleeper.close()


@attack("impersonation", "awareness impersonation (another user takes over a client id)")
async def impersonation(t: Target) -> dict[str, Any]:
    info = t.session("people.txt", "people")
    url, other_url = t.server.room_url(info, WRITER), t.server.room_url(info, EDITOR)
    alice_state = '{"user":{"username":"writer","name":"Writer","display_name":"Writer"}}'
    alice, watcher, mallory = [await raw_client(u) for u in (url, url, other_url)]
    try:
        for client in (alice, watcher, mallory):
            await client.handshake(30)
        await alice.send(create_awareness_message(encode_awareness_update(
            [AwarenessEntry(4242, 3, alice_state)])))
        await watcher.wait_for(lambda m: m.type is YMessageType.AWARENESS and
                               alice_state.encode() in m.payload, 30)
        mark = len(watcher.frames)
        t.begin()
        await mallory.send(create_awareness_message(encode_awareness_update(
            [AwarenessEntry(4242, 50, '{"user":{"name":"Mallory"}}')])))
        await mallory.send(create_awareness_message(encode_awareness_update(
            [AwarenessEntry(4242, 51, "null")])))
        await mallory.send(create_awareness_message(encode_awareness_update(
            [AwarenessEntry(777, 1, alice_state)])))
        await mallory.barrier(30)
        await watcher.barrier(30)
        t.end()
        seen = [entry for f in watcher.frames[mark:] for m in f.messages
                if m.type is YMessageType.AWARENESS
                for entry in decode_awareness_update(m.payload)]
    finally:
        for client in (alice, watcher, mallory):
            await client.close()
    adopted = any(entry.client_id == 4242 for entry in seen)
    shown = [json.loads(entry.state)["user"].get("name") for entry in seen
             if entry.client_id == 777 and entry.state != "null"]
    return {"outcome": f"{'adopted' if adopted else 'not adopted'}; the editor's own id, "
                       f"announced as Writer, shown as {', '.join(shown) or 'nothing'}",
            "adopted": adopted, "shown_as": shown}


@attack("timeline", "a reader's timeline loop: 100 timeline opens")
async def timeline_loop(t: Target) -> dict[str, Any]:
    # jupyter-collaboration opens the timeline of a room that is open only: one client holds it
    async with probes(t.room("looped.txt", "text")):
        path = "api/collaboration/timeline/looped.txt?format=text&type=file"
        copies, statuses = set(), collections.Counter()
        t.begin()
        for _ in range(100):
            status, line = t.server.request("GET", path, token=READER)
            statuses[status] += 1
            if status == 200:
                copies.add(line["forkRoom"])
        t.end()
    said = f"{len(copies)} fork room{'s' * (len(copies) != 1)}"
    if set(statuses) != {200}:
        said += f" (HTTP {dict(statuses)})"
    rows = None
    database = t.server.dir / "ydjango" / "ydjango.sqlite3"
    if t.server.kind == US and database.exists():
        db = sqlite3.connect(database)
        try:
            rows = db.execute("SELECT count(*) FROM jupyter_ydjango_fork WHERE kind = "
                              "'timeline'").fetchone()[0]
        finally:
            db.close()
        said += f", {rows} timeline fork row{'s' * (rows != 1)} stored"
    else:
        said += " held in memory"
    return {"outcome": said, "fork_rooms": len(copies), "fork_rows": rows,
            "statuses": dict(statuses)}


# --- the run --------------------------------------------------------------------------------


def run_in_thread(attack: Attack, target: Target) -> tuple[bool, Any]:
    """Run the attack on an event loop of its own, in a thread, up to its cap: (finished,
    its figures or the exception it raised). A thread that overruns is left behind (it
    ends when its server is stopped)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = asyncio.run(attack.run(target))
        except Exception as exc:
            box["value"] = exc

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(attack.cap)
    return not thread.is_alive(), box.get("value")


def one_run(attack: Attack, kind: str, tmp: Path, trial: int) -> dict[str, Any]:
    """An attack against a fresh server of ``kind``, typed through; its figures."""
    auth_dir = tmp / "auth"
    auth_dir.mkdir(exist_ok=True)
    with contextlib.suppress(FileExistsError):
        (auth_dir / AUTH.name).symlink_to(AUTH)
    server = JupyterProcess(kind, tmp, f"{attack.name}-{trial}", args=AUTH_ARGS,
                            env={"PYTHONPATH": str(auth_dir)})
    target, typist = Target(server), None
    sampler = Sampler(server.pid)
    try:
        typist = Typist(target.room(f"typing-{attack.name}.txt"))
        if not typist.wait_keys(10, 60):
            typist.stop()
            raise RuntimeError(f"{kind}: the typist does not type ({typist.error})")
        sampler.start()
        time.sleep(0.5)
        target.begin()
        finished, value = run_in_thread(attack, target)
        target.end()
        if not finished:
            figures = {"outcome": f"wedged: the attack took over {attack.cap:.0f} s"}
        elif isinstance(value, BaseException):
            figures = {"outcome": f"attack failed: {value!r}"[:240]}
        else:
            figures = value
        keys = len(typist.keys)
        state = "ok"
        if server.proc.poll() is not None:
            state = "server died"
        elif not typist.wait_keys(keys + RESUME_KEYS, RESUME_CAP) or any(
                lat is None for _, lat in typist.keys[keys:]):
            state = "wedged"
        if state != "ok":
            figures["outcome"] = f"{state}: {figures['outcome']}"
        time.sleep(max(0.0, target.ended + AFTER_S - time.monotonic()))
        rss_after = sampler.rss() if server.proc.poll() is None else math.nan
        sampler.stop()
        typist.stop()
        delays = typist.since(target.begun)
        arrived = [lat * 1000 for lat in delays if lat is not None]
        return {
            "server": kind, "trial": trial, "state": state, **figures,
            "typist": {"keystrokes": len(delays), "never": len(delays) - len(arrived),
                       "median_ms": statistics.median(arrived) if arrived else math.nan,
                       "max_ms": max(arrived, default=math.nan), "error": typist.error},
            "rss_mb": {"before": target.rss_before,
                       "peak": sampler.peak(target.begun, target.ended, target.rss_before),
                       "after": rss_after},
            "cpu_s": target.cpu[1] - target.cpu[0], "wall_s": target.ended - target.begun,
        }
    finally:
        if sampler.is_alive():
            sampler.stop()
        if typist is not None and typist.proc.poll() is None:
            typist.stop()
        server.stop()


def not_run(kind: str, trial: int, why: str) -> dict[str, Any]:
    """The record of a run that could not be made (its figures NaN)."""
    return {"server": kind, "trial": trial, "state": "not run", "outcome": why[:240],
            "typist": {"keystrokes": 0, "never": math.nan, "median_ms": math.nan,
                       "max_ms": math.nan, "error": ""},
            "rss_mb": dict.fromkeys(("before", "peak", "after"), math.nan),
            "cpu_s": math.nan, "wall_s": math.nan}


FIGURES = (("typist median ms", lambda r: r["typist"]["median_ms"], 1),
           ("slowest ms", lambda r: r["typist"]["max_ms"], 0),
           ("never", lambda r: r["typist"]["never"], 0),
           ("RSS before MB", lambda r: r["rss_mb"]["before"], 0),
           ("peak MB", lambda r: r["rss_mb"]["peak"], 0),
           ("after MB", lambda r: r["rss_mb"]["after"], 0),
           ("CPU s", lambda r: r["cpu_s"], 2),
           ("wall s", lambda r: r["wall_s"], 2))


def figure(values: list[float], digits: int) -> str:
    """``median (min-max)`` over the trials; the median alone if min and max read the same."""
    s = summary(values)
    if s["n"] and f"{s['min']:.{digits}f}" == f"{s['max']:.{digits}f}":
        return f"{s['median']:.{digits}f}"
    return fmt_spread(s, digits)


def attack_table(attack: Attack, runs: dict[str, list[dict[str, Any]]]) -> str:
    """One attack's table: a row per server, each figure's median (min-max) over the trials,
    and the outcomes (each distinct one once)."""
    rows = []
    for kind in SERVERS:
        if runs.get(kind):
            outcomes = list(dict.fromkeys(run["outcome"] for run in runs[kind]))
            rows.append([kind, *(figure([get(r) for r in runs[kind]], digits)
                                 for _, get, digits in FIGURES), " | ".join(outcomes)])
    return table(f"{attack.name}: {attack.title}",
                 ["server", *(name for name, _, _ in FIGURES), "outcome"], rows)


def options(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--only", default=",".join(ATTACKS),
                        help=f"comma-separated attacks (default: all: {', '.join(ATTACKS)})")
    parser.add_argument("--json", type=Path, default=RESULTS_JSON)
    parser.add_argument("--wait-load", type=float, metavar="LOAD",
                        help="first wait (up to --max-wait s) until the 1-minute load average "
                        "is below LOAD")
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--typist", metavar="URL", help=argparse.SUPPRESS)
    opts = parser.parse_args(argv)
    opts.attacks = benchlib.chosen(parser, opts.only, ATTACKS, "attacks")
    return opts


def main(argv: list[str] | None = None) -> None:
    opts = options(argv)
    if opts.typist:
        asyncio.run(type_until_stdin_closes(opts.typist))
        return
    benchlib.interrupt_on_signals()
    versions = {THEM: ensure_jc_venv(), US: our_versions()}
    load = wait_for_load(opts.wait_load, opts.max_wait) if opts.wait_load else loadavg()
    date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = git_commit()
    started = time.monotonic()
    progress(f"{opts.trials} trial(s) of {', '.join(opts.attacks)}; load average {load:.2f}")
    results: dict[str, dict[str, list[dict[str, Any]]]] = {
        name: {kind: [] for kind in SERVERS} for name in opts.attacks}
    with tempfile.TemporaryDirectory(prefix="ydjango-attacks-") as tmp_name:
        for trial in range(opts.trials):
            for name in opts.attacks:
                for kind in orders(trial):
                    progress(f"trial {trial + 1}: {name} against {kind}")
                    try:
                        run = one_run(ATTACKS[name], kind, Path(tmp_name), trial)
                    except Exception as exc:  # the server or the typist did not start
                        run = not_run(kind, trial, f"did not start: {exc}")
                    progress(f"  {run['outcome']}")
                    results[name][kind].append(run)
    load_after = loadavg()
    duration = time.monotonic() - started
    header = (f"Attacks on jupyter_ydjango (embedded) and jupyter-collaboration "
              f"{versions[THEM]['jupyter-collaboration']} ({date}, commit {commit}, "
              f"{os.cpu_count()} CPUs, load average {load:.2f} at start, {load_after:.2f} at "
              f"the end, {opts.trials} trial(s), {duration:.0f} s)")
    report = "\n".join([header, "", *(attack_table(ATTACKS[name], results[name])
                                      for name in opts.attacks),
                        "Not run (no jupyter-collaboration equivalent):",
                        *(f"- {what}" for what in SKIPPED), ""])
    print(report)
    write_json(opts.json, {
        "meta": {"date": date, "commit": commit, "trials": opts.trials,
                 "duration_s": round(duration, 1), "load_1min_start": load,
                 "load_1min_end": load_after, "cpus": os.cpu_count(),
                 "machine": platform.platform(), "python": platform.python_version(),
                 "versions": versions, "skipped": SKIPPED},
        "report": report, "results": results})
    progress(f"wrote {opts.json}")


if __name__ == "__main__":
    main()
