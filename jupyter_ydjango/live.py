"""The live room of a document, for server-side code that changes it.

A change made to the room's document in this process is what a client's edit is: logged by
this process, sent to the room's clients here and, through the relay, in every other
process, and saved to the file (by whichever process writes it). :func:`document_room` holds
the room (loading it from the database if this process has not) while the code changes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pycrdt
from channels.layers import get_channel_layer

from .conf import notebook_root
from .document import DocumentRoom
from .formats import FORMATS
from .history import read_changes, state_at
from .rooms import Room, find_room, get_registry
from .store import DocumentInfo, run_db, run_io

__all__ = ["current_state", "document_room"]


@contextlib.asynccontextmanager
async def document_room(info: DocumentInfo) -> AsyncIterator[DocumentRoom]:
    """The live room of a document, loaded in this process for the block.

    :raises ~jupyter_ydjango.document.LoadError: the room cannot be loaded (its file is
        missing, outside the root...).
    :raises KeyError: the document's type is not served.
    """
    doc_format = FORMATS[(info.format, info.type)]

    async def make_room() -> Room:
        return DocumentRoom(info.room_name, pycrdt.Doc(), document=info, format=doc_format,
                            root=notebook_root())

    registry = get_registry(get_channel_layer())
    room = await registry.acquire(info.room_name, make_room)
    try:
        assert isinstance(room, DocumentRoom)
        yield room
    finally:
        registry.release(room)


async def current_state(info: DocumentInfo) -> bytes:
    """The whole document as the database holds it, with what its room in this process holds
    (changes the log has not received yet)."""
    changes = await run_db(read_changes, info.id, 0.0)
    state = await run_io(state_at, changes)
    room = find_room(info.room_name)
    if isinstance(room, DocumentRoom):
        state = await run_io(pycrdt.merge_updates, state, room.diff())
    return state
