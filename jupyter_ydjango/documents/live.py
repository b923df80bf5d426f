"""Live documents for server-side code in the rooms' process: the jupyter_ydoc document
bound to a loaded room, which edits the room's document itself.

A change made through it is a change of the room like any client's: applied once, sent to
every client, written to the update log and saved. Everything here runs on the event loop
of the rooms (the Jupyter server's, when the Django side is embedded); the document must not
be used from another thread.

Rooms load and unload on their own (a room stays loaded while clients are connected and for
``YDJANGO_ROOM_UNLOAD_DELAY`` seconds after the last one left): a document obtained here
edits the room while it is loaded and nothing once it was unloaded. Ask again rather than
keeping it. One exception, for server-side execution: a notebook handed to server-side code
stays loaded while one of its cells is running (:func:`keep_loaded_while_running`), so that
the outputs of a cell that outlives its last client still reach the room and the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pycrdt
from channels.layers import get_channel_layer

from jupyter_ydjango.conf import notebook_root
from jupyter_ydjango.documents.room import DocumentRoom, LoadError
from jupyter_ydjango.formats.ydoc import YDocFormat, document_classes, find_format, without_undo
from jupyter_ydjango.protocol.room_id import RoomId
from jupyter_ydjango.rooms.room import Room, find_room, get_registry
from jupyter_ydjango.store import records
from jupyter_ydjango.store.contents import files_of
from jupyter_ydjango.store.dispatch import run_db, run_io
from jupyter_ydjango.store.history import read_changes, state_at
from jupyter_ydjango.store.paths import PathError, normalize_api_path
from jupyter_ydjango.store.records import DocumentInfo

logger = logging.getLogger(__name__)

__all__ = ["current_state", "document_room", "jupyter_document", "keep_loaded_while_running",
           "live_room", "room_id_of"]

#: How often a held notebook is checked for running cells, in seconds.
RUNNING_CHECK_INTERVAL = 1.0
#: The longest a notebook is held for its running cells, in seconds (a cell left "running"
#: by a kernel that died never says it stopped).
RUNNING_HOLD_LIMIT = 24 * 3600.0

# The rooms held for their running cells, and the tasks holding them.
_running_holds: weakref.WeakKeyDictionary[Room, asyncio.Task[None]] = weakref.WeakKeyDictionary()

# The jupyter_ydoc documents of notebook and text rooms (served by our own formats), made on
# first use; a generic room's format holds its own (see YDocFormat.bind).
_documents: weakref.WeakKeyDictionary[Room, Any] = weakref.WeakKeyDictionary()


async def room_id_of(path: str, file_format: str, file_type: str, *,
                     create: bool = False) -> str | None:
    """The room id of the document at API path ``path`` as ``{file_format}:{file_type}``:
    ``None`` if no client ever opened it (unless ``create``), or if no format serves that
    type."""
    if find_format(file_format, file_type) is None:
        return None
    try:
        api_path = normalize_api_path(path)
    except PathError:
        return None
    if await files_of().hidden(api_path):
        return None
    if create:
        info, _ = await run_db(records.get_or_create_document, api_path, file_format, file_type)
    else:
        info = await run_db(records.document_at, api_path)
        if info is None:
            return None
    return str(RoomId(file_format, file_type, str(info.id)))


async def live_room(room_id: str, *, load: bool = False) -> DocumentRoom | None:
    """The document room ``room_id`` loaded in this process; with ``load``, loaded now if it
    is not (it then stays loaded for the unload delay, or longer while clients are connected).

    ``None`` for an unknown room, or a file that cannot be loaded (logged).
    """
    room = find_room(room_id)
    if isinstance(room, DocumentRoom) or not load:
        return room if isinstance(room, DocumentRoom) else None
    file_format, file_type, file_id = RoomId.parse(room_id)
    doc_format = find_format(file_format, file_type)
    info = await run_db(records.get_document, file_id) if doc_format is not None else None
    if info is None or info.room_name != room_id:
        return None

    async def make_room() -> Room:
        return DocumentRoom(room_id, pycrdt.Doc(), document=info, format=doc_format,
                            root=notebook_root())

    registry = get_registry(get_channel_layer())
    try:
        loaded = await registry.acquire(room_id, make_room)
    except LoadError as exc:
        logger.warning("room %s: cannot load: %s", room_id, exc)
        return None
    registry.release(loaded)  # the unload delay starts; clients that join hold it
    return loaded if isinstance(loaded, DocumentRoom) else None


@contextlib.asynccontextmanager
async def document_room(info: DocumentInfo) -> AsyncIterator[DocumentRoom]:
    """The live room of a document, loaded in this process and held for the block (for
    server-side code that changes it: restores, merges).

    :raises LoadError: the room cannot be loaded (its file is missing, outside the root...).
    :raises LookupError: no format serves the document's type.
    """
    doc_format = find_format(info.format, info.type)
    if doc_format is None:
        raise LookupError(f"documents of type {info.format}:{info.type} are not served")

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


def jupyter_document(room: DocumentRoom) -> Any:
    """The jupyter_ydoc document on a loaded room's document (one per room): ``YNotebook``
    for notebooks, ``YFile`` for text files, the registered class for other types.

    It keeps no undo history (see :func:`~jupyter_ydjango.formats.ydoc.without_undo`).

    :raises LookupError: jupyter_ydoc is not installed.
    """
    if isinstance(room.format, YDocFormat):
        return room.format.document(room.doc)
    document = _documents.get(room)
    if document is None:
        classes = document_classes()
        _, file_type, _ = room.name.split(":", 2)
        document_class = classes.get(file_type) or classes.get("file")
        if document_class is None:
            raise LookupError("jupyter_ydoc is not installed")
        document = _documents[room] = without_undo(document_class(room.doc))
    return document


def keep_loaded_while_running(room: DocumentRoom) -> None:
    """Keep a loaded notebook room loaded while one of its cells is running
    (``execution_state``), whether clients are connected or not, for at most
    :data:`RUNNING_HOLD_LIMIT`; the unload delay starts when no cell runs any more.

    For server-side code that writes into the cells of a running execution (outputs,
    execution count) and must not lose them when the last client leaves.
    """
    if not room.name.startswith("json:notebook:") or room in _running_holds:
        return
    _running_holds[room] = asyncio.get_running_loop().create_task(_hold_while_running(room))


async def _hold_while_running(room: DocumentRoom) -> None:
    async def reloading() -> Room:
        raise LookupError("unloaded meanwhile")

    registry = get_registry(get_channel_layer())
    try:
        held = await registry.acquire(room.name, reloading)
    except LookupError:
        return
    deadline = time.monotonic() + RUNNING_HOLD_LIMIT
    try:
        # the first check after a while: the caller marks its cell running after asking
        await asyncio.sleep(RUNNING_CHECK_INTERVAL)
        while _has_running_cells(held) and time.monotonic() < deadline:
            await asyncio.sleep(RUNNING_CHECK_INTERVAL)
    finally:
        if find_room(held.name) is held:  # not unloaded by a shutdown meanwhile
            registry.release(held)
        _running_holds.pop(room, None)


def _has_running_cells(room: Room) -> bool:
    cells = room.doc.get("cells", type=pycrdt.Array)
    return any(isinstance(cell, pycrdt.Map) and cell.get("execution_state") == "running"
               for cell in cells)
