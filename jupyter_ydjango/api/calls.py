"""The frontend's frequent API requests as calls, free of HTTP: the session request that
starts every opening, and the room status the status bar polls.

Each returns an HTTP status and a JSON object (``{"error": "..."}`` for errors). The Django
views (:mod:`jupyter_ydjango.api.views`) and the plain ASGI routes
(:mod:`jupyter_ydjango.api.direct`) both translate HTTP to these, so the two give the same answers.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from urllib.parse import unquote

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.documents.room import DocumentRoom, preload
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.models import Document
from jupyter_ydjango.rooms.room import find_room, loaded_rooms
from jupyter_ydjango.store import grants, records
from jupyter_ydjango.store.contents import files_of
from jupyter_ydjango.store.dispatch import run_db
from jupyter_ydjango.store.paths import PathError, normalize_api_path

#: Longest document format or type name (the size of the database columns).
MAX_KIND_LENGTH: int = Document._meta.get_field("type").max_length


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (empty: ``{}``).

    :raises ValueError: not JSON, or not an object.
    """
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def loaded_document(api_path: str, kind: tuple[str, str]) -> records.DocumentInfo | None:
    """The document of ``api_path`` if a room of this process holds it (no database query)."""
    for room in loaded_rooms():
        if (isinstance(room, DocumentRoom) and not room.deleted
                and room.document.path == api_path
                and (room.document.format, room.document.type) == kind):
            return room.document
    return None


async def session(identity: Identity | None, path: str,
                  raw_body: bytes) -> tuple[int, dict[str, Any]]:
    """The answer to a session request for ``path`` (as routed: percent-decoded once).

    200 with ``{"format", "type", "fileId", "sessionId"}`` for a known file, 201 for a file
    indexed now; 400 bad body or a type no format serves (notebooks, text files and the
    types registered with jupyter_ydoc are served), 401 no identity, 403 a path outside the
    notebook root, 404 no such file, 413 a file larger than ``YDJANGO_MAX_FILE_SIZE``.
    Errors are ``{"error": "..."}``. A document whose room is loaded here is answered
    without a database query (a co-editor joining); otherwise its room starts loading now,
    ahead of the websocket the client opens next (:func:`~.document.preload`).
    """
    if identity is None:
        return 401, {"error": "not authenticated"}
    try:
        body = parse_json_object(raw_body)
    except ValueError as exc:
        return 400, {"error": str(exc)}
    kind = (body.get("format"), body.get("type"))
    doc_format = find_format(*kind) if all(isinstance(part, str) for part in kind) else None
    if doc_format is None:
        return 400, {"error": f"unknown document type {kind[0]!r}:{kind[1]!r} (not a "
                     "notebook, a text file or a type registered with jupyter_ydoc)"}
    if max(len(part) for part in kind) > MAX_KIND_LENGTH:
        return 400, {"error": f"document type {kind[0]!r}:{kind[1]!r}: names longer than "
                     f"{MAX_KIND_LENGTH} characters are not supported"}
    files = files_of()
    try:
        # a leading "/" is the root, as in Jupyter's contents API (the stock timeline sends
        # it, with the rest of the path percent-encoded once more)
        api_path = normalize_api_path(path.removeprefix("/"))
        exists = await files.exists(api_path)
        if not exists and path.startswith("/") and "%" in api_path:
            api_path = normalize_api_path(unquote(api_path))
            exists = await files.exists(api_path)
    except PathError as exc:
        return 403, {"error": str(exc)}
    if not exists or await files.hidden(api_path):
        # a hidden file is answered as Jupyter's contents API answers it
        return 404, {"error": f"file {api_path!r} does not exist"}
    api_path = await files.document_path(api_path, kind[1])  # a jupytext pair: its notebook
    info, created = loaded_document(api_path, kind), False
    if info is None:
        too_large = await files.too_large(api_path, kind[1])
        if too_large:
            return 413, {"error": too_large}
        info, created = await run_db(records.get_or_create_document, api_path, *kind)
        preload(info, doc_format)
    return (201 if created else 200), {
        "format": kind[0], "type": kind[1], "fileId": str(info.id),
        "sessionId": str(info.session_id)}


def _loaded_document(file_id: str) -> records.DocumentInfo | None:
    """The document of ``file_id`` as a room loaded in this process holds it, if any."""
    for room in loaded_rooms():
        document = getattr(room, "document", None)
        if isinstance(document, records.DocumentInfo) and str(document.id) == file_id:
            return document
    return None


async def room_status(identity: Identity | None, file_id: str) -> tuple[int, dict[str, Any]]:
    """The state of a document's room, for status bars (``GET /api/ydjango/rooms/<fileId>``).

    200 with the file's id, path, room, last save and write, save error, whether the room is
    loaded here (with its connections, why its changes cannot be stored, if they cannot, and
    why the file is read-only, ``fileReadOnly``, if it is) and whether the user may only
    read (``readOnly``: the user's permission, or a read-only file); 401 no identity, 404 no
    such document, 503 the database cannot be read and the room is not loaded here.
    """
    if identity is None:
        return 401, {"error": "not authenticated"}
    try:
        info = await run_db(records.get_document, file_id)
    except Exception as exc:  # the database is down: a room loaded here still answers
        info = _loaded_document(file_id)
        if info is None:
            return 503, {"error": f"the database cannot be read: {exc}"}
    if info is None:
        return 404, {"error": f"no document {file_id!r}"}
    status: dict[str, Any] = {
        "fileId": str(info.id),
        "path": info.path,
        "room": info.room_name,
        "loaded": False,
        "connections": 0,
        "lastSaved": info.last_saved.isoformat() if info.last_saved else None,
        "writtenAt": info.written_at.isoformat() if info.written_at else None,
        "writtenBy": info.written_by or None,
        "saveError": info.save_error or None,
        "storeError": None,
        "readOnly": not identity.can_write,
        "deleted": info.deleted is not None,
    }
    if identity.roles:  # a user given roles: what their role there lets them do
        permission = await run_db(partial(
            grants.permission_of, identity.username, records.file_location(info.path),
            str(info.id), identity.groups, can_write=identity.can_write))
        if permission is None:
            return 403, {"error": "you have no role on this document"}
        status["readOnly"] = permission != "write"
    room = find_room(info.room_name)
    if room is not None and hasattr(room, "status"):
        status.update(room.status())
    # a file the contents manager does not let be written is read-only for everyone
    status["readOnly"] = status["readOnly"] or bool(status.get("fileReadOnly"))
    return 200, status
