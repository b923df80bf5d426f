"""Which worker owns a room: rendezvous hashing over the workers of ``serve --workers N``.

Every connection to a room must reach the one worker that holds the room: a room loaded in
two workers costs each update twice (applied, logged and fanned out in both, and carried
between them by the relay). The supervisor hands each new connection to the owner of its
room (:func:`owner`; see :mod:`jupyter_ydjango.project.router`); a worker told that the
workers changed closes the connections of the rooms it no longer owns (their clients
reconnect, to the new owner), and loads no room ahead of its clients (at a session request)
unless it owns it (:class:`Owners`).

:func:`owner` is rendezvous (highest random weight) hashing: each room ranks every worker by
a hash of the pair, and the first live one owns it. A worker that leaves moves only its own
rooms, each to the worker it ranked second; a worker that joins takes from every other worker
only the rooms that rank it first (1/N of them), as a consistent hash ring does, but with no
ring to keep and an even spread for a handful of workers. The hash is BLAKE2b, the same in
every process and every run (Python's ``hash()`` is salted per process).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def rank(room: str, worker: int) -> int:
    """The weight of ``worker`` for ``room``: the highest among the live workers owns it."""
    digest = hashlib.blake2b(f"{worker}\0{room}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(room: str, workers: Iterable[int]) -> int:
    """The worker of ``workers`` (their numbers; at least one) that owns ``room``."""
    return max(workers, key=lambda worker: (rank(room, worker), worker))


class Owners:
    """The workers that own rooms, as worker number ``me`` was last told."""

    def __init__(self, me: int, members: Sequence[int]) -> None:
        self.me = me
        self.members = list(members)

    def owns(self, room: str) -> bool:
        """Whether this worker owns ``room`` (every worker does while it knows no members)."""
        return not self.members or owner(room, self.members) == self.me

