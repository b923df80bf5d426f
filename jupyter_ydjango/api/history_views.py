"""HTTP API of documents' history and copies: jupyter-collaboration's timeline, undo/redo and
fork endpoints, answered from the database.

* ``GET api/collaboration/timeline/<path>?format=&type=``: the document's points and a copy
  to move through them: ``{"roomId", "timestamps", "forkRoom", "sessionId"}``
  (:mod:`jupyter_ydjango.documents.timeline`).
* ``GET api/ydjango/history/<path>?format=&type=``: who made each point of the timeline:
  ``{"path", "roomId", "points": [{"timestamp", "authors": [{"username", "name",
  "display_name"}]}]}``, the points in the timeline's order (not part of
  jupyter-collaboration's API).
* ``PUT api/collaboration/undo_redo/<roomId>?action=undo|redo|restore&steps=N&forkRoom=``:
  move the copy ``N`` points back or forward (``{"status": "undone" | "redone"}``, or
  ``{"error": ...}`` when it cannot move further), or restore the point it shows (``{"code":
  200, "status": ...}``).
* ``GET api/collaboration/fork/<roomId>``: ``{forkRoomId: fork_info}`` of a document's
  forks; ``PUT`` with ``{"synchronize", "title", "description"}``: 201 ``{"sessionId",
  "fork_roomid", "fork_info"}``; ``DELETE api/collaboration/fork/<forkRoomId>?merge=true|false``
  deletes a fork, merging its changes into the document first with ``true``.

Errors are JSON ``{"error": ...}``: 400 bad parameters, 401 no identity, 403 a reader
restoring or changing forks (readers may open timelines and move their copy), or anyone
moving another user's timeline copy (each user has one per document), 404 unknown
files, rooms and forks, 409 a document whose file was deleted.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from jupyter_ydjango.api.csrf import mutating
from jupyter_ydjango.api.http import arequest_identity, error_response, json_body
from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.documents import timeline
from jupyter_ydjango.documents.fork_room import MergeConflict, drop_fork, merge_fork
from jupyter_ydjango.documents.live import current_state
from jupyter_ydjango.documents.room import LoadError
from jupyter_ydjango.formats.builtin import DocumentFormat
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.protocol.room_id import RoomId
from jupyter_ydjango.store import forks, records
from jupyter_ydjango.store.contents import files_of
from jupyter_ydjango.store.dispatch import run_db
from jupyter_ydjango.store.paths import PathError, normalize_api_path
from jupyter_ydjango.store.records import DocumentInfo

logger = logging.getLogger(__name__)

__all__ = ["authors_view", "fork", "timeline_view", "undo_redo"]


async def _document_of_room(room_id: str) -> tuple[DocumentInfo, DocumentFormat] | None:
    """The live document of a room id ``{format}:{type}:{fileId}`` and its format."""
    file_format, file_type, file_id = RoomId.parse(room_id)
    doc_format = find_format(file_format, file_type)
    info = await run_db(records.get_document, file_id) if doc_format else None
    if info is None or info.room_name != room_id or info.deleted is not None:
        return None
    assert doc_format is not None
    return info, doc_format


async def _document_of_fork(fork: forks.ForkInfo) -> tuple[DocumentInfo, DocumentFormat] | None:
    return await _document_of_room(fork.root_room)


async def _document_at(request: HttpRequest, path: str
                       ) -> tuple[DocumentInfo, DocumentFormat] | HttpResponse:
    """The live document at ``path`` of the type the ``format`` and ``type`` parameters
    give, and its format; or the error to answer."""
    kind = (request.GET.get("format", ""), request.GET.get("type", ""))
    doc_format = find_format(*kind)
    if doc_format is None:
        return error_response(400, f"unsupported or missing document type {kind[0]!r}:{kind[1]!r}")
    try:
        api_path = normalize_api_path(path.removeprefix("/"))
    except PathError as exc:
        return error_response(403, str(exc))
    hidden = await files_of().hidden(api_path)
    info = None if hidden else await run_db(records.live_document_at, api_path)
    if info is None or (info.format, info.type) != kind:
        return error_response(
            404, f"no collaborative document {api_path!r} of type {kind[0]}:{kind[1]}")
    return info, doc_format


@require_GET
async def timeline_view(request: HttpRequest, path: str) -> HttpResponse:
    """``GET api/collaboration/timeline/<path>?format=&type=``: open a document's timeline."""
    identity = await arequest_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    found = await _document_at(request, path)
    if isinstance(found, HttpResponse):
        return found
    info, doc_format = found
    try:
        fork, points = await timeline.open_timeline(info, doc_format, identity.username)
    except timeline.NoHistory:
        return error_response(404, f"{info.path!r} has no history yet: open it first")
    return JsonResponse({"roomId": info.room_name, "timestamps": [p.timestamp() for p in points],
                         "forkRoom": fork.id, "sessionId": str(info.session_id)})


@require_GET
async def authors_view(request: HttpRequest, path: str) -> HttpResponse:
    """``GET api/ydjango/history/<path>?format=&type=``: who made each point of a document's
    timeline (the points the timeline API lists, in the same order)."""
    identity = await arequest_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    found = await _document_at(request, path)
    if isinstance(found, HttpResponse):
        return found
    info, doc_format = found
    try:
        line = await timeline.read_timeline(info, doc_format)
    except timeline.NoHistory:
        return error_response(404, f"{info.path!r} has no history yet: open it first")
    names = await run_db(records.author_names, {a for point in line.authors for a in point})
    return JsonResponse({
        "path": info.path, "roomId": info.room_name,
        "points": [{"timestamp": point.timestamp(), "authors": [names[a] for a in authors]}
                   for point, authors in zip(line.points, line.authors, strict=True)]})


def _steps(request: HttpRequest, required: bool) -> int:
    """The ``steps`` parameter; :class:`ValueError` if missing (when required) or invalid."""
    raw = request.GET.get("steps")
    if raw is None or raw == "":
        if required:
            raise ValueError("steps is required")
        return 0
    try:
        steps = int(raw)
    except ValueError:
        raise ValueError(f"steps must be a whole number, not {raw!r}") from None
    if steps < 0:
        raise ValueError("steps cannot be negative")
    return steps


@mutating
@require_http_methods(["PUT"])
async def undo_redo(request: HttpRequest, room_id: str) -> HttpResponse:
    """``PUT api/collaboration/undo_redo/<roomId>?action=&steps=&forkRoom=``: move a
    timeline's copy, or restore the point it shows (writers only)."""
    identity = await arequest_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    action = request.GET.get("action", "")
    if action not in ("undo", "redo", "restore"):
        return error_response(400, f"action must be undo, redo or restore, not {action!r}")
    try:
        steps = _steps(request, required=action != "restore")
    except ValueError as exc:
        return error_response(400, str(exc))
    fork_id = request.GET.get("forkRoom", "")
    if not fork_id:
        return error_response(400, "forkRoom is required")
    if action == "restore" and not identity.can_write:
        return error_response(403, "read-only users cannot restore a document")
    fork = await run_db(forks.get_fork, fork_id)
    document = None if fork is None else await _document_of_fork(fork)
    if fork is None or fork.kind != "timeline" or fork.root_room != room_id or document is None:
        return error_response(404, f"no timeline {fork_id!r} of room {room_id!r}")
    if fork.owner and fork.owner != identity.username:
        return error_response(403, "this timeline is another user's: open your own")
    info, doc_format = document
    try:
        if action == "restore":
            await timeline.restore(fork, info, doc_format, identity.username)
            logger.info("%s: %s restored a point of %s", room_id, identity.username, info.path)
            return JsonResponse({"code": 200, "status": "Document restored successfully"})
        position = await timeline.move(fork, doc_format, -steps if action == "undo" else steps)
    except forks.ForkGone:
        return error_response(404, f"the timeline {fork_id!r} was closed")
    except (MergeConflict, LoadError) as exc:
        return error_response(409, str(exc))
    if position is None:
        return JsonResponse({"error": f"No more {action} operations available"})
    return JsonResponse({"status": "undone" if action == "undo" else "redone",
                         "position": position})


def _fork_settings(request: HttpRequest) -> dict[str, Any]:
    """The body of a fork's creation; :class:`ValueError` if malformed."""
    body = json_body(request)
    synchronize = body.get("synchronize", False)
    title, description = body.get("title", ""), body.get("description", "")
    if not isinstance(synchronize, bool):
        raise ValueError("synchronize must be true or false")
    if not isinstance(title, str) or not isinstance(description, str):
        raise ValueError("title and description must be strings")
    return {"synchronize": synchronize, "title": title, "description": description}


@mutating
@require_http_methods(["GET", "PUT", "DELETE"])
async def fork(request: HttpRequest, room_id: str) -> HttpResponse:
    """``api/collaboration/fork/<roomId>``: list (GET) and make (PUT) a document's forks;
    ``DELETE`` with a fork's id: delete it (``merge=true``: merge it first)."""
    identity = await arequest_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    if request.method == "DELETE":
        return await _delete_fork(request, identity, room_id)
    if request.method == "PUT" and not identity.can_write:
        return error_response(403, "read-only users cannot fork a document")
    try:
        settings = _fork_settings(request) if request.method == "PUT" else {}
    except ValueError as exc:
        return error_response(400, str(exc))
    document = await _document_of_room(room_id)
    if document is None:
        return error_response(404, f"no document room {room_id!r}")
    info, _ = document
    if request.method == "GET":
        listed = await run_db(forks.list_forks, info.id)
        return JsonResponse({item.id: item.api_info() for item in listed})
    state = await current_state(info)
    made = await run_db(lambda: forks.create_fork(info.id, state, owner=identity.username,
                                                  **settings))
    logger.info("%s: %s forked %s as %s", room_id, identity.username, info.path, made.id)
    return JsonResponse({"sessionId": str(info.session_id), "fork_roomid": made.id,
                         "fork_info": made.api_info()}, status=201)


async def _delete_fork(request: HttpRequest, identity: Identity, fork_id: str) -> HttpResponse:
    merge = request.GET.get("merge", "")
    if merge not in ("true", "false"):
        return error_response(400, f"merge must be true or false, not {merge!r}")
    if not identity.can_write:
        return error_response(403, "read-only users cannot delete or merge forks")
    found = await run_db(forks.get_fork, fork_id)
    if found is None or found.kind != "fork":
        return error_response(404, f"no fork {fork_id!r}")
    if merge == "true":
        document = await _document_of_fork(found)
        if document is None:
            return error_response(409, f"the document of fork {fork_id!r} was deleted")
        try:
            await merge_fork(found, document[0])
        except forks.ForkGone:
            return error_response(404, f"no fork {fork_id!r}")
        except (MergeConflict, LoadError) as exc:
            return error_response(409, str(exc))
    await drop_fork(fork_id)
    logger.info("fork %s deleted by %s (merged: %s)", fork_id, identity.username, merge)
    return JsonResponse({"fork_roomid": fork_id, "fork_info": found.api_info(),
                         "merged": merge == "true"})
