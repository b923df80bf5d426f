"""Backing services for scale-out tests: a throwaway PostgreSQL database, a private Redis,
a TCP forwarder that can be paused, and the worker processes of ``serve --workers N``.

Everything here starts real processes or sockets and cleans up after itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from daphne_servers import UnixHTTPConnection, free_port

PG_HOST = os.environ.get("YDJANGO_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("YDJANGO_TEST_PG_PORT", "5432"))
#: Users tried, in order, to reach the ``postgres`` maintenance database (trust auth).
PG_USERS: Sequence[str] = tuple(
    u for u in os.environ.get("YDJANGO_TEST_PG_USERS", "postgres,root").split(",") if u
)


# --- PostgreSQL ---------------------------------------------------------------------------


def postgres_user() -> tuple[str | None, str]:
    """A user that can connect to the ``postgres`` database, or ``(None, why not)``."""
    try:
        import psycopg
    except ImportError as exc:
        return None, f"psycopg is not installed ({exc})"
    errors = []
    for user in PG_USERS:
        try:
            with psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres",
                                 connect_timeout=3):
                return user, ""
        except Exception as exc:
            errors.append(f"{user}: {str(exc).strip().splitlines()[0]}")
    return None, f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT} ({'; '.join(errors)})"


class PgDatabase:
    """A database of its own on the shared PostgreSQL server, dropped by :meth:`drop`."""

    def __init__(self, user: str, prefix: str = "ydjango_test") -> None:
        import psycopg

        self.user = user
        self.name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def url(self, host: str = PG_HOST, port: int = PG_PORT) -> str:
        """The database URL (``YDJANGO_DATABASE_URL``), optionally through another address."""
        return f"postgres://{self.user}@{host}:{port}/{self.name}"

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection; its rows (empty for no result)."""
        import psycopg

        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=self.user, dbname=self.name,
                             autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def drop(self) -> None:
        """Drop the database, closing whatever is still connected to it."""
        import psycopg

        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=self.user, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- Redis --------------------------------------------------------------------------------


def redis_server_binary() -> str | None:
    """The ``redis-server`` executable, if installed."""
    return shutil.which("redis-server")


class RedisServer:
    """A private ``redis-server`` on a free port (no persistence), which can be restarted on
    the same port."""

    def __init__(self, tmp: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.tmp = tmp
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._starts = 0
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        """Start the server (again) on its port and wait until it answers PING."""
        self._starts += 1
        log = open(self.tmp / f"redis-{self._starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp), "--protected-mode", "no"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on {self.port} within {timeout} s")

    def ping(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            try:
                sock.connect(("127.0.0.1", self.port))
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False

    def stop(self) -> None:
        """Stop the server (its data goes with it: no persistence)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- a TCP forwarder that can be paused -----------------------------------------------------


#: The shipped HAProxy configuration (deploy/haproxy.cfg).
HAPROXY_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy_binary() -> str | None:
    """The ``haproxy`` executable, if installed (Debian's package puts it in /usr/sbin)."""
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


class LoadBalancer:
    """HAProxy on a free port with the shipped configuration, in front of two services
    (``host:port`` each), as its comments say to run it."""

    def __init__(self, tmp: Path, services: Sequence[str]) -> None:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed")
        assert len(services) == 2, "the shipped configuration names two services"
        self.port = free_port()
        env = {**os.environ, "YDJANGO_LB_BIND": f"127.0.0.1:{self.port}",
               "YDJANGO_SERVICE_1": services[0], "YDJANGO_SERVICE_2": services[1]}
        self.log_path = tmp / "haproxy.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([binary, "-db", "-f", str(HAPROXY_CONFIG)], env=env,
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not listening_on(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"haproxy did not start: {self.log_path.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def listening_on(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class TcpForwarder:
    """Forwards ``127.0.0.1:<port>`` to ``target``, on an event loop in a thread of its own.

    :meth:`pause` cuts every open connection and refuses new ones (accepted, then closed at
    once) until :meth:`resume`: to the clients, the target is briefly unavailable.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.paused = False
        self.refused = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-forwarder", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the forwarder did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True))
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.paused:
            self.refused += 1
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        pair = {writer, up_writer}
        self._writers |= pair

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            for w in pair:
                w.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= pair

    def _call(self, func: Any) -> None:
        done = threading.Event()

        def run() -> None:
            try:
                func()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(10)

    def pause(self) -> None:
        """Cut every connection and refuse new ones."""

        def cut() -> None:
            self.paused = True
            for writer in list(self._writers):
                transport = writer.transport
                transport.abort()  # RST: the client sees the connection die at once
            self._writers.clear()

        self._call(cut)

    def resume(self) -> None:
        """Forward new connections again."""

        def go() -> None:
            self.paused = False

        self._call(go)

    def close(self) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            self._loop.stop()

        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(stop)
            self._thread.join(10)


# --- serve --workers N ----------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc/<pid>/task/*/children``)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(p) for p in f.read().split()]
    return sorted(set(out))


def wait_for_children(pid: int, count: int, timeout: float = 30.0,
                      exclude: Sequence[int] = ()) -> list[int]:
    """Wait until ``pid`` has ``count`` children (none of them in ``exclude``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = [k for k in children(pid) if k not in exclude]
        if len(kids) == count and all(_alive(k) for k in kids):
            return kids
        time.sleep(0.1)
    raise AssertionError(f"process {pid} has children {children(pid)}, not {count} new ones")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(int(link[8:-1]))
    return inodes


def _tcp_table() -> Iterator[tuple[tuple[str, int], tuple[str, int], int, int, int]]:
    """``(local, remote, state, rx_queue, inode)`` of every IPv4 TCP socket
    (``/proc/net/tcp``; a listening socket's ``rx_queue`` is its accept queue's length)."""
    def address(text: str) -> tuple[str, int]:
        host, port = text.split(":")
        raw = bytes.fromhex(host)[::-1]
        return ".".join(str(b) for b in raw), int(port, 16)

    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            rx_queue = int(fields[4].split(":")[1], 16)
            yield (address(fields[1]), address(fields[2]), int(fields[3], 16), rx_queue,
                   int(fields[9]))


def connections_by_worker(workers: Sequence[int], port: int) -> dict[int, set[int]]:
    """For each worker pid, the client ports of its accepted connections on ``port``."""
    by_inode = {inode: remote[1] for local, remote, _, _, inode in _tcp_table()
                if local[1] == port and remote[1] != 0}
    return {pid: {by_inode[i] for i in _socket_inodes(pid) if i in by_inode}
            for pid in workers}




def kill(pid: int, only_if: str | None = None) -> None:
    """SIGKILL a process (if it is still there and, with ``only_if``, if its command line
    still contains that text: a pid seen earlier may be another process by now)."""
    if only_if is not None:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if only_if.encode() not in f.read():
                    return
        except OSError:
            return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def worker_number(pid: int) -> int | None:
    """The ``YDJANGO_WORKER`` of a process (a worker of ``serve --workers N``), from its
    environment."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for entry in f.read().split(b"\0"):
                if entry.startswith(b"YDJANGO_WORKER="):
                    return int(entry.split(b"=", 1)[1])
    except OSError:
        pass
    return None


def serving_workers(supervisor: int, count: int, timeout: float = 60.0) -> dict[int, int]:
    """Worker number -> pid of the workers of the ``serve --workers N`` supervisor
    ``supervisor``, once ``count`` of them serve and each knows that these own the rooms
    (their ``/healthz``)."""
    deadline = time.monotonic() + timeout
    while True:
        pids = {n: pid for pid in children(supervisor)
                if (n := worker_number(pid)) is not None}
        owners: list[Any] = []
        for pid in pids.values():
            try:
                owners.append(worker_health(pid)["owners"])
            except (OSError, ValueError, http.client.HTTPException):
                owners.append(None)  # not serving yet
        if len(pids) == count and all(o == sorted(pids) for o in owners):
            return pids
        if time.monotonic() > deadline:
            raise AssertionError(f"workers {pids} know owners {owners}, not {count} workers")
        time.sleep(0.05)


def worker_health(pid: int) -> dict[str, Any]:
    """``/healthz`` of one worker of ``serve --workers N`` (its rooms and connections), asked
    on the worker's own Unix socket (named in its command line)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    conn = UnixHTTPConnection(argv[argv.index(b"--unix-socket") + 1].decode())
    try:
        conn.request("GET", "/healthz")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()
