"""A worker's side of ``serve --workers N``: adopt the connections the supervisor hands over,
and let go of the rooms that move to another worker.

The worker reads its control socket (see :mod:`jupyter_ydjango.project.router` for the
messages) on daphne's event loop. A connection it is given joins daphne's HTTP server as if
daphne had accepted it (Twisted's ``adoptStreamConnection``). When the supervisor says which
workers own rooms now, the worker notes it in its room registry (it then preloads only its
own rooms) and closes, with 4502, every connection to a room whose owner is another worker:
its clients reconnect and the supervisor sends them to the owner. The room itself stays
loaded here until its unload delay passes (the relay keeps it in step meanwhile), so
nothing it held is lost on the way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.rooms.owners import Owners
from jupyter_ydjango.rooms.room import get_registry, loaded_rooms

logger = logging.getLogger(__name__)

_FAMILIES = {b"c4": socket.AF_INET, b"c6": socket.AF_INET6}


def rooms_elsewhere(owners: Owners) -> int:
    """Close the connections of the rooms of this process that ``owners`` give to another
    worker; how many were closed."""
    closed = 0
    for room in loaded_rooms():
        if not room.peers or owners.owns(room.name):
            continue
        logger.info("room %s moves to another worker: closing its %d connections", room.name,
                    len(room.peers))
        for peer in list(room.peers):
            peer.disconnect(close_codes.ROOM_MOVED)
            closed += 1
    return closed


class Handoff:
    """Reads the supervisor's control socket ``control_fd`` in worker number ``me``;
    ``http_factory`` gives daphne's HTTP factory once daphne runs."""

    def __init__(self, control_fd: int, me: int, http_factory: Callable[[], Any]) -> None:
        self.control = socket.socket(fileno=control_fd)
        self.control.setblocking(False)
        self.me = me
        self._factory = http_factory

    def start(self) -> None:
        """Start reading (on daphne's running event loop) and tell the supervisor we serve."""
        asyncio.get_event_loop().add_reader(self.control, self._readable)
        self.control.send(b"ready")

    def _readable(self) -> None:
        try:
            message, fds, _flags, _address = socket.recv_fds(self.control, 4096, 4)
        except BlockingIOError:
            return
        except OSError:
            message, fds = b"", []
        if not message:
            self._orphaned()
            return
        kind = message[:2]
        if kind in _FAMILIES:
            for fd in fds:
                self._adopt(fd, _FAMILIES[kind])
            return
        for fd in fds:  # none expected with another message
            os.close(fd)
        if message[:1] == b"m":
            owners = Owners(self.me, json.loads(message[1:]))
            get_registry().owners = owners
            rooms_elsewhere(owners)

    def _adopt(self, fd: int, family: socket.AddressFamily) -> None:
        from twisted.internet import reactor

        try:
            reactor.adoptStreamConnection(fd, family, self._factory())
        except Exception:
            logger.exception("cannot adopt a connection handed over by the supervisor")
        finally:
            os.close(fd)  # the reactor holds its own copy

    def _orphaned(self) -> None:
        """The supervisor is gone: stop (as on SIGTERM: flushing every room first)."""
        from twisted.internet import reactor

        asyncio.get_event_loop().remove_reader(self.control)
        logger.error("the supervisor is gone: stopping")
        reactor.stop()
