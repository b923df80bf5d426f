"""The supervisor's side of ``serve --workers N``: accept each connection, read its request
line without consuming it, and hand the socket to the worker that owns its room.

The supervisor alone listens on the address. For each new connection it peeks
(``MSG_PEEK``) at the bytes the client sent until it has the request line, picks the worker
(the :func:`~jupyter_ydjango.rooms.owners.owner` of the room, :func:`room_of` the path, or
the next worker in turn for a request that opens no room) and passes the socket itself over
the worker's control socket (``SCM_RIGHTS``). The worker then reads the request from the
start, as if it had accepted the connection: the supervisor never consumes a byte of the
stream, and after the hand-off it is out of the connection's path (no copy, no proxying).

Measured reasons for this design over the others: forwarding every frame of a connection
from the worker that accepted it to the room's owner over the channel layer costs a Redis
round trip and a serialisation per frame, in two processes, which is the doubled CPU per
update that affinity is there to remove; and with ``SO_REUSEPORT`` the kernel picks the
worker by a hash of the connection's addresses, which knows nothing of rooms.

Control messages on a worker's ``SOCK_SEQPACKET`` control socket, one per packet:

* supervisor to worker: ``c4`` / ``c6`` with one file descriptor, a connection (IPv4 or
  IPv6) to adopt; ``m`` and a JSON list of worker numbers, the workers that own rooms now;
* worker to supervisor: ``ready``, once it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import socket
import time
from collections.abc import Callable, Sequence
from urllib.parse import unquote

from jupyter_ydjango.rooms.owners import owner

logger = logging.getLogger(__name__)

#: Length of the listening socket's queue of connections not accepted yet.
BACKLOG = 2048
#: Bytes of a request line looked at (a longer line goes to a worker, which answers 414).
MAX_REQUEST_LINE = 8192
#: Seconds a client has to send its request line before its connection is closed.
REQUEST_LINE_TIMEOUT = 10.0
#: Seconds a connection waits for a worker: while none serves (they are starting, or every
#: one was restarted at once), as it would wait in a listening socket's queue; then it is
#: closed.
WAIT_FOR_WORKER = 60.0
#: Seconds a worker has to take a connection (its control socket is full: it does not read
#: it) before the connection goes to the next worker.
HANDOFF_TIMEOUT = 2.5
#: Seconds between two peeks at a connection whose request line is not complete yet (the
#: socket stays readable while unread bytes wait, so readiness alone would spin).
PEEK_INTERVAL = 0.005

#: The room of a websocket path: JupyterLab's ``api/collaboration/room/<id>`` and plain
#: y-websocket's ``ws/<room>``, wherever the service is mounted.
_ROOM_PATH = re.compile(r"/(?:api/collaboration/room|ws)/([^/]+)$")


def room_of(request_line: bytes) -> str | None:
    """The room an HTTP request line (``GET /path?query HTTP/1.1``) is for, or ``None`` for
    a request that opens no room (the HTTP API, metrics, a malformed line)."""
    parts = request_line.split(b" ")
    if len(parts) != 3 or parts[0] != b"GET":
        return None
    path = parts[1].split(b"?", 1)[0].split(b"#", 1)[0]
    try:
        match = _ROOM_PATH.search(path.decode("ascii"))
    except UnicodeDecodeError:
        return None
    return None if match is None else unquote(match.group(1))


def listen(host: str, port: int) -> socket.socket:
    """The supervisor's listening socket on ``host:port`` (non-blocking)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


async def request_line(conn: socket.socket) -> bytes | None:
    """The first line of what ``conn`` sent, left unread; ``None`` if it closed, sent no line
    within :data:`REQUEST_LINE_TIMEOUT`, or sent more than :data:`MAX_REQUEST_LINE` bytes
    without one (that is for a worker to refuse)."""
    deadline = time.monotonic() + REQUEST_LINE_TIMEOUT
    while True:
        try:
            seen = conn.recv(MAX_REQUEST_LINE, socket.MSG_PEEK)
        except BlockingIOError:
            seen = None
        except OSError:
            return None
        if seen == b"":
            return None
        if seen:
            end = seen.find(b"\r\n")
            if end >= 0:
                return seen[:end]
            if len(seen) >= MAX_REQUEST_LINE:
                return seen
        if time.monotonic() > deadline:
            return None
        if seen is None:
            if not await _readable(conn, deadline):
                return None
        else:
            await asyncio.sleep(PEEK_INTERVAL)


async def _readable(conn: socket.socket, deadline: float) -> bool:
    """Wait until ``conn`` has bytes to read; False at ``deadline``."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn, lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, max(0.0, deadline - time.monotonic()))
        return True
    except asyncio.TimeoutError:
        return False
    finally:
        loop.remove_reader(conn)


class Router:
    """Hands accepted connections to workers.

    ``controls`` maps each worker number to its control socket (the supervisor sets each
    worker's as it starts it), and ``members`` lists the workers ready to serve
    (:meth:`set_members`).
    """

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.controls: dict[int, socket.socket] = {}
        self.members: list[int] = []
        self._turn = itertools.count()
        self._routing: set[asyncio.Task[None]] = set()
        self._member_change = asyncio.Event()
        #: Connections handed to each worker (for logs and tests).
        self.handed: dict[int, int] = {}

    def set_members(self, members: Sequence[int]) -> None:
        """The workers that serve now (sorted); wakes connections waiting for one."""
        self.members = sorted(members)
        self._member_change.set()
        self._member_change = asyncio.Event()

    async def serve(self) -> None:
        """Accept connections until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            conn, _ = await loop.sock_accept(self.listener)
            conn.setblocking(False)
            task = loop.create_task(self._route(conn))
            self._routing.add(task)
            task.add_done_callback(self._routing.discard)

    async def _route(self, conn: socket.socket) -> None:
        try:
            line = await request_line(conn)
            if line is None:
                return
            room = room_of(line)
            deadline = time.monotonic() + WAIT_FOR_WORKER
            tried: set[int] = set()
            while time.monotonic() < deadline:
                candidates = [w for w in self.members if w not in tried]
                if not candidates:
                    if tried:  # each refused: start over with whoever serves now
                        tried.clear()
                        await asyncio.sleep(0.05)
                        continue
                    await self._wait_for_members(deadline)
                    continue
                worker = self._pick(room, candidates)
                if await self._hand(worker, conn, deadline):
                    return
                tried.add(worker)
            logger.warning("no worker took a connection for %s within %.0f s: closed",
                           room or "the HTTP API", WAIT_FOR_WORKER)
        finally:
            conn.close()  # the worker holds its own copy

    def _pick(self, room: str | None, candidates: list[int]) -> int:
        if room is not None:
            return owner(room, candidates)
        return candidates[next(self._turn) % len(candidates)]

    async def _wait_for_members(self, deadline: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._member_change.wait(),
                                   max(0.0, deadline - time.monotonic()))

    async def _hand(self, worker: int, conn: socket.socket, deadline: float) -> bool:
        """Pass ``conn`` to ``worker``; False if it cannot take it before ``deadline``, or
        gone."""
        kind = b"c6" if conn.family == socket.AF_INET6 else b"c4"
        # a worker that does not read its control socket gets HANDOFF_TIMEOUT: its rooms'
        # next-ranked workers serve meanwhile (the relay keeps both in step)
        give_up = min(deadline, time.monotonic() + HANDOFF_TIMEOUT)
        while True:
            control = self.controls.get(worker)
            if control is None or worker not in self.members:
                return False
            try:
                socket.send_fds(control, [kind], [conn.fileno()])
            except BlockingIOError:
                if time.monotonic() > give_up:
                    return False
                await asyncio.sleep(0.01)
                continue
            except OSError as exc:  # the worker is gone: the supervisor notices it too
                logger.info("worker %d did not take a connection: %r", worker, exc)
                return False
            self.handed[worker] = self.handed.get(worker, 0) + 1
            return True


def watch_control(control: socket.socket, on_message: Callable[[bytes], None],
                  on_close: Callable[[], None]) -> None:
    """Call ``on_message`` with each packet a worker sends on ``control``, and ``on_close``
    once when it closes (the worker exited)."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = control.recv(256)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(control)
            on_close()
            return
        on_message(data)

    loop.add_reader(control, readable)
