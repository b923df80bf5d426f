"""HTTP API of the Django side: jupyter-collaboration's session endpoint, room status, renames
and deletions.

Views translate HTTP to calls of the store; the Jupyter server proxies them (with the user's
identity, see :mod:`jupyter_ydjango.api.middleware`). Errors are JSON ``{"error": "..."}``.
"""

from __future__ import annotations

import asyncio
import os

from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from jupyter_ydjango import metrics
from jupyter_ydjango.api import calls as api_calls
from jupyter_ydjango.api.csrf import mutating
from jupyter_ydjango.api.http import arequest_identity, error_response, json_body, request_identity
from jupyter_ydjango.documents.room import DocumentRoom
from jupyter_ydjango.rooms.room import find_room, get_registry, loaded_rooms
from jupyter_ydjango.store import records
from jupyter_ydjango.store.dispatch import run_db
from jupyter_ydjango.store.paths import PathError, normalize_api_path


async def health(request: HttpRequest) -> HttpResponse:
    """``GET /healthz``: 200 when the database and the channel layer answer, else 503; with
    this process's worker number, the workers that own rooms as it was last told (``None``
    outside ``serve --workers N``), its rooms loaded and its room connections."""
    checks: dict[str, str] = {}

    def database() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    try:
        await asyncio.wait_for(run_db(database), 5)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {exc!r}"
    layer = get_channel_layer()
    if layer is not None:
        try:
            channel = await layer.new_channel()
            await asyncio.wait_for(layer.send(channel, {"type": "health.ping"}), 5)
            await asyncio.wait_for(layer.receive(channel), 5)
            checks["channel_layer"] = "ok"
        except Exception as exc:
            checks["channel_layer"] = f"error: {exc!r}"
    ok = all(value == "ok" for value in checks.values())
    rooms = loaded_rooms()
    owners = get_registry().owners
    return JsonResponse({"status": "ok" if ok else "failing", **checks,
                         "worker": os.environ.get("YDJANGO_WORKER", "0"),
                         "owners": None if owners is None else owners.members,
                         "rooms": len(rooms), "connections": sum(len(r.peers) for r in rooms)},
                        status=200 if ok else 503)


def prometheus(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the service's counters in Prometheus' text format."""
    return HttpResponse(metrics.render(), content_type=metrics.CONTENT_TYPE_LATEST)


@mutating
@require_http_methods(["PUT"])
async def session(request: HttpRequest, path: str) -> HttpResponse:
    """``PUT /api/collaboration/session/<path>`` with ``{"format", "type"}``: the file's room
    (:func:`~jupyter_ydjango.api.calls.session` says how each case is answered)."""
    status, answer = await api_calls.session(await arequest_identity(request), path, request.body)
    return JsonResponse(answer, status=status)


@require_GET
async def room_status(request: HttpRequest, file_id: str) -> HttpResponse:
    """``GET /api/ydjango/rooms/<fileId>``: the state of a document's room, for status bars
    (see :func:`~jupyter_ydjango.api.calls.room_status`)."""
    status, answer = await api_calls.room_status(await arequest_identity(request), file_id)
    return JsonResponse(answer, status=status)


@mutating
@require_POST
def rename(request: HttpRequest) -> HttpResponse:
    """``POST /api/ydjango/rename`` with ``{"old_path", "new_path"}``: keep file ids across a
    rename (of a file or a directory). 204; 400 bad body, 401/403 not allowed to write."""
    identity = request_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    if not identity.can_write:
        return error_response(403, "read-only users cannot rename")
    try:
        body = json_body(request)
        old_path = normalize_api_path(str(body.get("old_path", "")))
        new_path = normalize_api_path(str(body.get("new_path", "")))
    except (ValueError, PathError) as exc:
        return error_response(400, str(exc))
    records.rename(old_path, new_path)
    return HttpResponse(status=204)


@mutating
@require_POST
async def delete(request: HttpRequest) -> HttpResponse:
    """``POST /api/ydjango/delete`` with ``{"path"}``: a file (or a directory) was deleted.

    Its documents are marked deleted (their history stays; a new file at the path is a new
    document) and their rooms loaded in this process stop saving and tell their clients at
    once (rooms in other processes follow within their file poll). 204; 400 bad body,
    401/403 not allowed to write.
    """
    identity = await arequest_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    if not identity.can_write:
        return error_response(403, "read-only users cannot delete")
    try:
        body = json_body(request)
        path = normalize_api_path(str(body.get("path", "")))
    except (ValueError, PathError) as exc:
        return error_response(400, str(exc))
    for info in await run_db(records.mark_deleted, path):
        room = find_room(info.room_name)
        if isinstance(room, DocumentRoom):
            await room.file_deleted()
    return HttpResponse(status=204)
