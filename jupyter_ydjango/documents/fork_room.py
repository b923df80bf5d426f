"""The rooms of forks: ``/api/collaboration/room/{forkId}``.

A fork's room is a :class:`ForkRoom`: its document is the fork's copy, loaded from the
:class:`~jupyter_ydjango.models.Fork` row and stored back there as it changes (within
:attr:`ForkRoom.write_delay`, by the process whose client made the change; see
:mod:`jupyter_ydjango.store.forks`). It is unloaded like any room once its last client left, the
row staying in the database. A ``synchronize`` fork follows its document: while its room is
loaded, the document's live room is held in the same process and every change of it is
applied to the copy, after what the copy missed while no room had it.

:class:`~jupyter_ydjango.api.consumers.ForkConsumer` serves the room to clients: an unknown
fork id is refused with 4404, a ``sessionId`` of another history of the document with 4409;
readers join read-only. When the fork is deleted (merged, restored or dropped), its clients
are closed with 4404.

:func:`merge_fork` gives a fork's changes back to its document.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pycrdt
from channels.layers import get_channel_layer

from jupyter_ydjango.documents.live import document_room
from jupyter_ydjango.documents.room import DocumentRoom, LoadError
from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.rooms.pending import PendingChanges
from jupyter_ydjango.rooms.relay import REMOTE, room_group_name
from jupyter_ydjango.rooms.room import HISTORY, Room, find_room
from jupyter_ydjango.store import forks
from jupyter_ydjango.store.dispatch import run_db, run_io
from jupyter_ydjango.store.records import DocumentInfo

__all__ = ["ROOT", "ForkRoom", "MergeConflict", "copy_state", "drop_fork",
           "merge_fork", "missing"]

logger = logging.getLogger(__name__)

#: Origin of the changes a synchronised fork receives from its document.
ROOT = "root"


class ForkRoom(Room):
    """A room whose document is a fork's copy, stored in the fork's row."""

    #: Seconds the writer gathers changes before storing them as one write.
    write_delay = 0.02

    def __init__(self, name: str, doc: pycrdt.Doc, *, fork: forks.ForkInfo,
                 document: DocumentInfo) -> None:
        super().__init__(name, doc)
        self.fork = fork
        self.document = document
        #: Changes to store.
        self.pending: PendingChanges = PendingChanges()
        self._writer: asyncio.Task[None] | None = None
        #: While following its document: the document's live room, held until unloaded.
        self._following: contextlib.AsyncExitStack | None = None
        self._root: DocumentRoom | None = None
        self._root_subscription: Any = None

    async def on_load(self) -> None:
        row = await run_db(forks.read_state, self.fork.id)
        if row is None:
            raise LoadError(close_codes.NOT_FOUND, f"no fork {self.fork.id}")
        self.apply_update(row[0], HISTORY)
        self._writer = asyncio.get_running_loop().create_task(self._write())
        if self.fork.synchronize:
            await self._follow_root()

    def on_change(self, update: bytes, origin: Any) -> None:
        if origin is HISTORY or origin is REMOTE:
            return  # stored already, or by the process that published it
        self.pending.published(update, self.relay)

    async def on_unload(self) -> None:
        if self._following is not None and self._root is not None:
            self._root.doc.unobserve(self._root_subscription)
            await self._following.aclose()
            self._following = self._root = None
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer
        with contextlib.suppress(forks.ForkGone):
            await self.flush()
        with contextlib.suppress(Exception):
            await run_db(forks.touch, self.fork.id)

    # --- following the document ---------------------------------------------------------

    async def _follow_root(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            root = await stack.enter_async_context(document_room(self.document))
        except (LoadError, LookupError) as exc:
            logger.warning("fork %s: cannot follow %s: %s", self.name, self.document.path, exc)
            return
        self._following, self._root = stack, root
        self.apply_update(root.diff(self.state_vector()), ROOT)  # what it missed
        self._root_subscription = root.doc.observe(
            lambda event: self.apply_update(event.update, ROOT))

    # --- storing ------------------------------------------------------------------------

    async def _write(self) -> None:
        """Store queued changes, in order; retried until stored, dropped once the fork is
        gone."""
        def failed(exc: Exception) -> bool:
            if isinstance(exc, forks.ForkGone):
                return False
            logger.error("fork %s: cannot store its changes (retrying): %r", self.name, exc)
            return True

        async def written() -> None:
            pass

        await self.pending.write(self.flush, gather=lambda: self.write_delay, failed=failed,
                                 recovered=lambda: None, written=written)

    async def flush(self) -> None:
        """Store every queued change now. :raises ForkGone:"""
        while self.pending:
            batch = self.pending.batch()

            def apply(doc: pycrdt.Doc, batch: list[bytes] = batch) -> None:
                for update in batch:
                    doc.apply_update(update)

            await forks.change_state(self.fork.id, apply)
            self.pending.stored(len(batch))


async def copy_state(fork: forks.ForkInfo) -> tuple[bytes, int | None]:
    """A fork's copy as stored, with what its room in this process holds; and its position
    (a timeline's). :raises ForkGone:"""
    row = await run_db(forks.read_state, fork.id)
    if row is None:
        raise forks.ForkGone(fork.id)
    state, _, position = row
    room = find_room(fork.id)
    if isinstance(room, ForkRoom):
        state = await run_io(pycrdt.merge_updates, state, room.diff())
    return state, position


def missing(state: bytes, state_vector: bytes) -> bytes:
    """What a document at ``state_vector`` lacks of ``state`` (thread-safe)."""
    doc = pycrdt.Doc()
    doc.apply_update(state)
    return doc.get_update(state_vector)


class MergeConflict(Exception):
    """The document cannot take a fork's changes (its file was deleted)."""


async def merge_fork(fork: forks.ForkInfo, info: DocumentInfo) -> None:
    """Apply a fork's changes to its document, as an edit (logged, sent to everyone, saved).
    :raises ForkGone: :raises MergeConflict: :raises LoadError:"""
    state, _ = await copy_state(fork)
    async with document_room(info) as room:
        if room.deleted:
            raise MergeConflict(f"{info.path} was deleted")
        room.apply_update(await run_io(missing, state, room.state_vector()))


async def drop_fork(fork_id: str) -> None:
    """Delete a fork and close its room's connections, in every process."""
    await run_db(forks.delete_fork, fork_id)
    await notify_deleted(fork_id)


async def notify_deleted(fork_id: str) -> None:
    """Close the connections to a deleted fork's room, in every process."""
    await get_channel_layer().group_send(room_group_name(fork_id), {"type": "fork.deleted"})
