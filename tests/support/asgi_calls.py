"""HTTP requests straight into the project's ASGI application, as the Jupyter server's bridge
and daphne make them: no sockets, the whole of Django's request cycle where the route takes
it there."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_ydjango.api.identity import SCOPE_KEY, Identity


def applications() -> dict[str, Any]:
    from jupyter_ydjango.api.middleware import IdentityMiddleware
    from jupyter_ydjango.project.asgi import application, django_asgi_app

    return {"endpoint": application, "django": IdentityMiddleware(django_asgi_app)}


async def call(app: Any, path: str, body: bytes | list[bytes] = b"", *, method: str = "PUT",
               identity: Identity | None = None, host: str = "localhost",
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request through ``app``; its status and JSON body (``None`` if no response)."""
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        "headers": [(b"host", host.encode()),
                    *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items())],
    }
    if identity is not None:
        scope[SCOPE_KEY] = identity
    chunks = body if isinstance(body, list) else [body]  # []: the client leaves at once
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)]
    sent: list[dict[str, Any]] = []
    answered = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        if chunks:  # the whole body was sent: the client waits for the answer
            await answered.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            answered.set()

    await app(scope, receive, send)
    if not sent:
        return 0, None
    raw = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(raw) if raw else None
