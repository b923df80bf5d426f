"""``serve --workers N``: every connection to a room reaches the one worker that owns it.

Runs ``python -m jupyter_ydjango serve --workers 2`` on a private ``redis-server`` and a
SQLite database, with real websockets to awareness rooms. Which worker process holds which
connection is read from ``/proc`` (Linux only); which worker should own a room is computed
here with the same rendezvous hash (:func:`jupyter_ydjango.rooms.owners.owner`).
The same with Yjs clients of both kinds, document rooms, PostgreSQL, a killed worker and a
load balancer is in ``test_scaleout.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from backing_services import (
    RedisServer,
    children,
    connections_by_worker,
    kill,
    redis_server_binary,
    serving_workers,
)
from daphne_servers import Server, migrate, serve_command, server_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidMessage

from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.rooms.owners import owner

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads /proc (Linux only)")


class Supervisor:
    """``serve --workers 2`` and what the tests need to know about its workers."""

    def __init__(self, tmp: Path, redis: RedisServer) -> None:
        env = server_env(tmp / "data", YDJANGO_REDIS_URL=redis.url,
                         YDJANGO_ALLOW_ANONYMOUS="1", YDJANGO_RELAY_HEARTBEAT="1",
                         YDJANGO_ROOM_UNLOAD_DELAY="1")
        (tmp / "data").mkdir()
        migrate(env)
        self.server = Server([*serve_command(), "--no-migrate", "--workers", "2"], env,
                             tmp / "supervisor.log")
        self.pid = self.server.proc.pid
        self.port = self.server.port
        #: every worker pid seen, to clean up after the supervisor
        self.seen: set[int] = set()

    def workers(self, count: int = 2, timeout: float = 60) -> dict[int, int]:
        """Worker number -> pid, once ``count`` workers own rooms."""
        workers = serving_workers(self.pid, count, timeout)
        self.seen |= set(workers.values())
        return workers

    def stop(self) -> None:
        self.seen |= set(children(self.pid))
        self.server.stop()
        for pid in self.seen:
            kill(pid, only_if="jupyter_ydjango")


@pytest.fixture(scope="module")
def supervisor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisor]:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (a private Redis is started per module)")
    tmp_path = tmp_path_factory.mktemp("workers")
    redis = RedisServer(tmp_path / "redis")
    supervisor = None
    try:
        supervisor = Supervisor(tmp_path, redis)
        supervisor.workers()
        yield supervisor
    finally:
        if supervisor is not None:
            supervisor.stop()
        redis.stop()


class Rooms:
    """Websockets to awareness rooms, opened through the supervisor's address."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.open: dict[str, list[ClientConnection]] = {}

    async def connect(self, room: str, count: int = 1) -> list[ClientConnection]:
        new = [await connect(f"ws://127.0.0.1:{self.port}/api/collaboration/room/{room}")
               for _ in range(count)]
        self.open.setdefault(room, []).extend(new)
        return new

    def held_by(self, workers: dict[int, int]) -> dict[str, dict[int, int]]:
        """Room -> worker number -> how many of its open connections that worker holds."""
        ports = connections_by_worker(list(workers.values()), self.port)
        return {room: {n: sum(ws.local_address[1] in ports[pid] for ws in sockets
                              if ws.close_code is None)
                       for n, pid in workers.items()}
                for room, sockets in self.open.items()}

    async def close(self) -> None:
        everything = [ws for sockets in self.open.values() for ws in sockets]
        await asyncio.gather(*(ws.close() for ws in everything), return_exceptions=True)
        self.open.clear()


def only_in(held: dict[int, int]) -> int | None:
    """The one worker holding connections of a room, or ``None`` if several or none do."""
    holders = [n for n, count in held.items() if count]
    return holders[0] if len(holders) == 1 else None


async def wait_closed(sockets: list[ClientConnection], timeout: float) -> list[int | None]:
    await asyncio.wait_for(asyncio.gather(*(ws.wait_closed() for ws in sockets)), timeout)
    return [ws.close_code for ws in sockets]


async def test_each_room_lives_in_the_worker_that_owns_it(supervisor: Supervisor) -> None:
    """16 rooms of 3 connections each, opened through the one address: every connection of
    a room is held by the room's owner, and the rooms spread over both workers."""
    workers = supervisor.workers()
    rooms = Rooms(supervisor.port)
    try:
        for n in range(16):
            await rooms.connect(f"one-worker-{n}", 3)
        held = rooms.held_by(workers)
        for room, by_worker in held.items():
            assert by_worker[owner(room, [0, 1])] == 3, (room, by_worker)
            assert only_in(by_worker) is not None, (room, by_worker)
        assert {only_in(by_worker) for by_worker in held.values()} == {0, 1}
    finally:
        await rooms.close()


async def test_a_silent_client_holds_up_nobody(supervisor: Supervisor) -> None:
    """Connections that never send a request line (the supervisor reads each one's first
    line before handing it over) do not delay the next client's handshake."""
    silent = [socket.create_connection(("127.0.0.1", supervisor.port)) for _ in range(20)]
    rooms = Rooms(supervisor.port)
    try:
        started = time.monotonic()
        await asyncio.wait_for(rooms.connect("after-silence", 2), 10)
        assert time.monotonic() - started < 5
    finally:
        for sock in silent:
            sock.close()
        await rooms.close()


async def test_a_worker_added_takes_only_its_rooms(supervisor: Supervisor) -> None:
    """SIGTTIN starts a third worker. Once it serves, exactly the open rooms that now rank it
    first are closed with 4502 (the others stay open), and reconnected they land on it.
    SIGTTOU removes it again: its clients reconnect to the rooms' former owners."""
    supervisor.workers()
    rooms = Rooms(supervisor.port)
    names = [f"added-{n}" for n in range(24)]
    try:
        for name in names:
            await rooms.connect(name, 2)
        moving = [name for name in names if owner(name, [0, 1, 2]) == 2]
        assert moving  # 24 rooms: each ranks worker 2 first with probability 1/3
        os.kill(supervisor.pid, signal.SIGTTIN)
        three = supervisor.workers(3)
        codes = await wait_closed([ws for name in moving for ws in rooms.open[name]], 30)
        assert set(codes) == {close_codes.ROOM_MOVED}, codes
        await asyncio.sleep(0.5)
        staying = [ws for name in names if name not in moving for ws in rooms.open[name]]
        assert all(ws.close_code is None for ws in staying)
        for name in moving:
            await rooms.connect(name, 2)
        held = rooms.held_by(three)
        for name in names:
            assert only_in(held[name]) == owner(name, [0, 1, 2]), (name, held[name])

        os.kill(supervisor.pid, signal.SIGTTOU)
        await wait_closed([ws for name in moving for ws in rooms.open[name][2:]], 60)
        two = supervisor.workers(2)
        for name in moving:
            await rooms.connect(name, 1)
        held = rooms.held_by(two)
        for name in names:
            assert only_in(held[name]) == owner(name, [0, 1]), (name, held[name])
    finally:
        await rooms.close()


async def test_a_killed_workers_rooms_go_to_the_other_and_come_back(
        supervisor: Supervisor) -> None:
    """Worker 0 is SIGKILLed: its connections drop, and reopened at once they are served by
    worker 1 (within 5 s), while worker 1's own connections stay open. When worker 0 serves
    again, its rooms move back (closed with 4502, reopened on worker 0)."""
    workers = supervisor.workers()
    rooms = Rooms(supervisor.port)
    names = [f"killed-{n}" for n in range(12)]
    try:
        for name in names:
            await rooms.connect(name)
        victims = [name for name in names if owner(name, [0, 1]) == 0]
        survivors = [name for name in names if name not in victims]
        assert victims and survivors
        kill(workers[0])
        killed_at = time.monotonic()
        await wait_closed([rooms.open[name][0] for name in victims], 10)
        for name in victims:
            while True:  # handed to the dying worker before the supervisor noticed: retried
                try:
                    await asyncio.wait_for(rooms.connect(name), 10)
                    break
                except (OSError, InvalidMessage):
                    assert time.monotonic() - killed_at < 5
        assert time.monotonic() - killed_at < 5
        held = rooms.held_by({1: workers[1]})
        assert all(held[name][1] == 1 for name in victims), held
        assert all(rooms.open[name][0].close_code is None for name in survivors)

        back = supervisor.workers(2)
        assert back[0] != workers[0] and back[1] == workers[1]
        codes = await wait_closed([rooms.open[name][-1] for name in victims], 60)
        assert set(codes) == {close_codes.ROOM_MOVED}
        for name in victims:
            await rooms.connect(name)
        held = rooms.held_by(back)
        assert all(only_in(held[name]) == 0 for name in victims), held
    finally:
        await rooms.close()
