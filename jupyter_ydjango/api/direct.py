"""The frontend's frequent API requests as plain ASGI, in front of Django's request cycle.

Every notebook a user opens starts with ``PUT /api/collaboration/session/<path>``, and the
status bar of every open notebook polls ``GET /api/ydjango/rooms/<fileId>``. Through Django's
ASGI handler each such request pays for a new thread (Django runs each request's sync code
in a thread of its own), a trip to that thread for each middleware and request signal, and a
new database connection there: ~6 ms for an answer that takes well under 1 ms.

A client that brings its own identity (the Jupyter server's in-process bridge, or a signed
identity header; see :mod:`jupyter_ydjango.api.middleware`) needs none of Django's middleware, so
:class:`DirectRoutes` answers these two requests for it with the same calls as the Django
views (:mod:`jupyter_ydjango.api.calls`). Every other request, including one from a browser
logged in to Django, goes to Django unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from jupyter_ydjango.api.identity import SCOPE_KEY
from jupyter_ydjango.api.middleware import scope_decides

#: The session route (Django's ``api/collaboration/session/<path:path>``), answered for PUT.
SESSION_PREFIX = "/api/collaboration/session/"
#: The room status route (Django's ``api/ydjango/rooms/<str:file_id>``), answered for GET.
ROOM_STATUS_PREFIX = "/api/ydjango/rooms/"
#: Largest request body read (a session request's ``{"format", "type"}`` is ~40 bytes).
MAX_BODY_BYTES = 64 * 1024


class _Disconnected(Exception):
    pass


class _TooLarge(Exception):
    pass


async def read_body(receive: Any, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body from ASGI ``receive``.

    :raises _TooLarge: it exceeds ``limit`` bytes.
    :raises _Disconnected: the client left first.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def host_allowed(scope: dict[str, Any]) -> bool:
    """Whether the ``Host`` header names one of ``ALLOWED_HOSTS`` (as Django checks it)."""
    host = ""
    for name, value in scope.get("headers") or ():
        if name == b"host":
            host = value.decode("latin-1")
            break
    domain, _ = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


async def send_json(send: Any, status: int, answer: dict[str, Any]) -> None:
    """An HTTP response with ``answer`` as its JSON body."""
    body = json.dumps(answer).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
    ]})
    await send({"type": "http.response.body", "body": body})


def route(scope: dict[str, Any]) -> tuple[str, str] | None:
    """``("session", path)`` or ``("room_status", file_id)`` for a request
    :class:`DirectRoutes` answers, else ``None``."""
    if scope["type"] != "http":
        return None
    if not scope_decides(scope):
        return None  # perhaps a Django login: Django's session middleware knows
    path: str = scope["path"]
    root = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root):]
    method = scope.get("method")
    if method == "PUT" and path.startswith(SESSION_PREFIX) and len(path) > len(SESSION_PREFIX):
        return "session", path[len(SESSION_PREFIX):]
    if method == "GET" and path.startswith(ROOM_STATUS_PREFIX):
        file_id = path[len(ROOM_STATUS_PREFIX):]
        if file_id and "/" not in file_id:
            return "room_status", file_id
    return None


class DirectRoutes:
    """ASGI middleware: answers the session and room status requests of clients with an
    identity (or a refused one) itself, and passes everything else to ``app`` (Django)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = route(scope)
        if target is None:
            return await self.app(scope, receive, send)
        if not host_allowed(scope):
            return await send_json(send, 400, {"error": "the Host header is not one of the "
                                               "service's ALLOWED_HOSTS"})
        try:
            body = await read_body(receive)
        except _Disconnected:
            return None
        except _TooLarge:
            return await send_json(send, 413, {"error": "the body is too large"})
        from jupyter_ydjango.api import (
            calls as api_calls,  # needs Django's apps: imported once they are ready
        )

        kind, argument = target
        identity = scope.get(SCOPE_KEY)
        if kind == "session":
            status, answer = await api_calls.session(identity, argument, body)
        else:
            status, answer = await api_calls.room_status(identity, argument)
        return await send_json(send, status, answer)
