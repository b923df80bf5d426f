"""The changes a storing room has yet to store, and what the relay may say about them.

A room that stores its changes (a document's update log, a fork's copy) queues each change
here, then stores the queue in batches. The relay tells the other processes up to which of
its own published changes this process has stored them (:meth:`PendingChanges.stored_seq`),
so that a receiver keeps the changes of a publisher that dies before storing them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_ydjango.rooms.backoff import Backoff


class PendingChanges:
    """Changes to store, in order, each with the relay sequence number it was published
    under (``None`` for a change another process published and went away without storing)
    and the user name of who made it (``""``: the server, or unknown). ``wake`` is set
    whenever a change is queued."""

    def __init__(self) -> None:
        self._items: list[tuple[int | None, bytes, str]] = []
        self.wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def published(self, update: bytes, relay: Any, author: str = "") -> None:
        """Queue a change this process made and (if it has a relay) has just published."""
        self._items.append((relay.seq if relay is not None else 0, update, author))
        self.wake.set()

    def unconfirmed(self, updates: list[bytes]) -> None:
        """Queue changes another process published and went away without storing."""
        self._items += [(None, update, "") for update in updates]
        self.wake.set()

    def stored_seq(self, relay: Any) -> int:
        """The relay sequence number up to which this process's own changes are stored."""
        seq = next((seq for seq, _, _ in self._items if seq is not None), None)
        if seq is not None:
            return seq - 1
        return relay.seq if relay is not None else 0

    def batch(self) -> list[bytes]:
        """Every queued change, oldest first (they stay queued until :meth:`stored`)."""
        return [update for _, update, _ in self._items]

    def authors(self, count: int) -> list[str]:
        """Who made the ``count`` oldest changes (sorted user names, the server's left out)."""
        return sorted({author for _, _, author in self._items[:count] if author})

    def stored(self, count: int) -> None:
        """Drop the ``count`` oldest changes: they are stored."""
        del self._items[:count]

    def clear(self) -> None:
        """Drop every queued change (there is nowhere left to store them)."""
        self._items.clear()

    async def write(self, flush: Callable[[], Awaitable[None]], *, gather: Callable[[], float],
                    failed: Callable[[Exception], bool], recovered: Callable[[], None],
                    written: Callable[[], Awaitable[None]]) -> None:
        """Store the queue as changes come, until cancelled: the one batch loop of every
        storing room.

        Once a change is queued, wait ``gather()`` seconds for more, then ``flush()`` (which
        stores batches and calls :meth:`stored`) until the queue is empty. When it raises,
        ``failed(exc)`` says whether to keep the changes and try again after a pause that
        doubles up to 5 s (``True``), or drop them (``False``: there is nowhere left to store
        them); ``recovered()`` is called at the first success after failures, and
        ``written()`` each time the queue was emptied.
        """
        backoff = Backoff()
        while True:
            await self.wake.wait()
            await asyncio.sleep(gather())
            self.wake.clear()
            while self:
                try:
                    await flush()
                except Exception as exc:
                    if not failed(exc):
                        self.clear()
                        break
                    await asyncio.sleep(backoff.failed())
                    continue
                if backoff.succeeded():
                    recovered()
            await written()
