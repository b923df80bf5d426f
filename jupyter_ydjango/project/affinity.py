"""Which worker owns a room: the room a request is for, and rendezvous hashing over workers.

Every connection to a room must reach the one worker that holds the room: a room loaded in
two workers costs each update twice (applied, logged and fanned out in both, and carried
between them by the relay). The supervisor of ``serve --workers N`` reads each new
connection's request line, takes the room from its path (:func:`room_of`) and hands the
connection to the room's owner (:func:`owner`); a worker told that the workers changed
closes the connections of the rooms it no longer owns, and their clients reconnect to the
new owner.

:func:`owner` is rendezvous (highest random weight) hashing: each room ranks every worker by
a hash of the pair, and the first live one owns it. A worker that leaves moves only its own
rooms, each to the worker it ranked second; a worker that joins takes from every other worker
only the rooms that rank it first (1/N of them), as a consistent hash ring does, but with no
ring to keep and an even spread for a handful of workers. The hash is BLAKE2b, the same in
every process and every run (Python's ``hash()`` is salted per process).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from urllib.parse import unquote

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


def rank(room: str, worker: int) -> int:
    """The weight of ``worker`` for ``room``: the highest among the live workers owns it."""
    digest = hashlib.blake2b(f"{worker}\0{room}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(room: str, workers: Iterable[int]) -> int:
    """The worker of ``workers`` (their numbers; at least one) that owns ``room``."""
    return max(workers, key=lambda worker: (rank(room, worker), worker))
