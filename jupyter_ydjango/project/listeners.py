"""The listening sockets of ``serve --workers N``: one ``SO_REUSEPORT`` socket per worker.

Linux spreads the new connections of an address over the listening sockets of its
``SO_REUSEPORT`` group by a hash of each connection's addresses, so each worker gets its share
whether it is busy or idle (as nginx's ``reuseport`` does). With one socket shared by every
worker, whichever worker wakes first takes the connection: under light load nearly always the
same one, and websockets stay open for hours.

The supervisor reserves the address with a socket that is bound but never listens, and gives
each worker, every time it starts one, a new socket bound to the same address. The worker
starts listening (:func:`start_listening`) once it is ready to accept, so no connection waits
in the queue of a worker that cannot answer yet. The supervisor keeps no copy: a worker's
socket closes when the worker dies and leaves the group at once. The connections it had not
accepted yet are reset by the kernel and their clients reconnect, to another worker (or, with
the ``net.ipv4.tcp_migrate_req`` sysctl set to 1, the kernel hands them to another worker).

Where ``SO_REUSEPORT`` does not spread connections (outside Linux) every worker listens on one
shared socket, and the balance is up to the kernel's wake-ups.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
from collections.abc import Iterator

logger = logging.getLogger(__name__)

#: Length of each listening socket's queue of connections not accepted yet.
BACKLOG = 2048


def reuseport_balances() -> bool:
    """Whether this platform spreads connections over the sockets of a ``SO_REUSEPORT``
    group (Linux does; BSD and macOS give every connection to one of them)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


class Listeners:
    """The address ``host:port`` and the sockets its workers listen on."""

    def __init__(self, host: str, port: int, *, reuseport: bool | None = None) -> None:
        self.host = host
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.reuseport = reuseport_balances() if reuseport is None else reuseport
        self._shared: socket.socket | None = None
        self._anchor: socket.socket | None = None
        if self.reuseport:
            try:
                self._anchor = self._bind(port)
            except OSError as exc:  # e.g. a kernel without SO_REUSEPORT
                logger.warning("SO_REUSEPORT is not available (%s): the workers share one "
                               "listening socket, and the kernel does not balance them", exc)
                self.reuseport = False
        if not self.reuseport:
            self._shared = socket.create_server((host, port), family=self.family,
                                                backlog=BACKLOG)
        #: The port (the one the system chose where ``port`` was 0).
        self.port: int = (self._anchor or self._shared).getsockname()[1]

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((self.host, port))
        except BaseException:
            sock.close()
            raise
        return sock

    @contextlib.contextmanager
    def for_worker(self) -> Iterator[int]:
        """The file descriptor of the socket of a worker being started (daphne ``--fd``),
        open within the block: start the worker process in it."""
        if self._shared is not None:
            yield self._shared.fileno()
            return
        sock = self._bind(self.port)
        try:
            yield sock.fileno()
        finally:
            sock.close()  # the worker holds its own copy; its death closes the socket

    def close(self) -> None:
        """Close the supervisor's sockets (the address is free once the workers are gone)."""
        for sock in (self._anchor, self._shared):
            if sock is not None:
                sock.close()


def start_listening(fd: int) -> None:
    """In a worker: listen on the socket ``fd`` the supervisor gave it (harmless on a socket
    that listens already)."""
    sock = socket.socket(fileno=fd)
    try:
        sock.listen(BACKLOG)
    finally:
        sock.detach()
