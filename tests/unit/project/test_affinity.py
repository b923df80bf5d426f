"""Which worker owns a room (rendezvous hashing), and the room of a request line."""

from __future__ import annotations

import asyncio
import collections
import os
import socket
import subprocess
import sys

import pytest

from jupyter_ydjango.project import router
from jupyter_ydjango.project.router import room_of
from jupyter_ydjango.rooms.owners import Owners, owner

ROOMS = [f"json:notebook:{n:08x}-room" for n in range(3000)]


@pytest.mark.parametrize(("line", "room"), [
    (b"GET /api/collaboration/room/json:notebook:abc HTTP/1.1", "json:notebook:abc"),
    (b"GET /api/collaboration/room/json:notebook:abc?sessionId=1&token=x HTTP/1.1",
     "json:notebook:abc"),
    (b"GET /prefix/api/collaboration/room/JupyterLab%3AglobalAwareness HTTP/1.1",
     "JupyterLab:globalAwareness"),
    (b"GET /ws/plain-room HTTP/1.1", "plain-room"),
    (b"GET /api/collaboration/room/0123456789abcdef0123456789abcdef HTTP/1.1",
     "0123456789abcdef0123456789abcdef"),
    (b"PUT /api/collaboration/session/a.ipynb HTTP/1.1", None),
    (b"GET /metrics HTTP/1.1", None),
    (b"GET /api/collaboration/room/a/b HTTP/1.1", None),
    (b"POST /api/collaboration/room/x HTTP/1.1", None),
    (b"GET /api/collaboration/room/\xff HTTP/1.1", None),
    (b"garbage", None),
])
def test_the_room_of_a_request_line(line: bytes, room: str | None) -> None:
    assert room_of(line) == room


def test_rooms_spread_evenly() -> None:
    for workers in ([0, 1], [0, 1, 2, 3]):
        counts = collections.Counter(owner(room, workers) for room in ROOMS)
        share = len(ROOMS) / len(workers)
        assert all(abs(counts[w] - share) < 0.1 * share for w in workers), counts


def test_a_worker_that_leaves_moves_only_its_rooms() -> None:
    before = {room: owner(room, [0, 1, 2]) for room in ROOMS}
    after = {room: owner(room, [0, 2]) for room in ROOMS}
    moved = [room for room in ROOMS if before[room] != after[room]]
    assert moved and all(before[room] == 1 for room in moved)
    assert len(moved) == sum(1 for w in before.values() if w == 1)


def test_a_worker_that_joins_takes_a_fair_share_from_every_other() -> None:
    before = {room: owner(room, [0, 1]) for room in ROOMS}
    after = {room: owner(room, [0, 1, 2]) for room in ROOMS}
    moved = [room for room in ROOMS if before[room] != after[room]]
    assert all(after[room] == 2 for room in moved)
    assert abs(len(moved) - len(ROOMS) / 3) < 0.1 * len(ROOMS) / 3
    assert {before[room] for room in moved} == {0, 1}


def test_a_worker_that_knows_no_members_owns_every_room() -> None:
    assert Owners(1, []).owns("any")
    mine = [room for room in ROOMS if Owners(1, [0, 1]).owns(room)]
    assert mine == [room for room in ROOMS if owner(room, [0, 1]) == 1]


def test_every_process_agrees_on_the_owner() -> None:
    """Python's own ``hash()`` differs per process; the owners must not."""
    code = ("from jupyter_ydjango.rooms.owners import owner; "
            f"print([owner(r, [0, 1, 2]) for r in {ROOMS[:50]!r}])")
    outputs = {subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                              text=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
               for seed in ("1", "2")}
    assert outputs == {f"{[owner(r, [0, 1, 2]) for r in ROOMS[:50]]}\n"}


async def test_the_request_line_is_read_without_consuming_it() -> None:
    """The supervisor peeks: what the client sent is still there for the worker, including
    a request line that arrives in pieces."""
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        reading = asyncio.ensure_future(router.request_line(a))
        b.send(b"GET /ws/ro")
        await asyncio.sleep(0.05)
        assert not reading.done()
        b.send(b"om HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await asyncio.wait_for(reading, 5) == b"GET /ws/room HTTP/1.1"
        assert a.recv(100) == b"GET /ws/room HTTP/1.1\r\nHost: x\r\n\r\n"
    finally:
        a.close()
        b.close()


async def test_a_client_that_sends_no_request_line_is_given_up(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router, "REQUEST_LINE_TIMEOUT", 0.2)
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        assert await asyncio.wait_for(router.request_line(a), 5) is None
        b.send(b"GET /ws/room")  # a line with no end, then the client closes
        b.close()
        assert await asyncio.wait_for(router.request_line(a), 5) is None
    finally:
        a.close()
