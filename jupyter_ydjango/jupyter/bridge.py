"""The embedded backend: the Django Channels ASGI application called in-process.

The Jupyter server and the Django side share one event loop: an HTTP request becomes one
call of the ASGI application with an ``http`` scope; a websocket becomes one call with a
``websocket`` scope that lives as long as the connection. The scope carries the user's
:class:`~jupyter_ydjango.api.identity.Identity` under
:data:`~jupyter_ydjango.api.identity.SCOPE_KEY`
(scopes are built here, never from the network, so the identity needs no signature).

Backpressure: frames travel between the browser's socket and the application through two
bounded mailboxes. The application's ``receive()`` takes from the inbox; the handler's
``on_message`` waits while the inbox is full, and Tornado reads no further frame from the
browser meanwhile, so a busy room slows its senders down over TCP instead of queueing without
bound. The application's ``send()`` waits while the outbox is full; the handler takes each
frame and hands it to Tornado at once, counting the bytes not yet flushed to the browser, and
disconnects a browser with more than its send budget waiting (see the handler).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from jupyter_ydjango.api.identity import SCOPE_KEY, Identity
from jupyter_ydjango.jupyter.backend import (
    Backend,
    BackendError,
    Frame,
    HttpResponse,
    RoomConnection,
)
from jupyter_ydjango.protocol import close_codes

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.3"}


class _Mailbox:
    """A FIFO between two tasks, bounded in items and bytes, that ends with a final value.

    :meth:`put` waits while the mailbox is full (one item is always let in, whatever its
    size); :meth:`get` returns the items in order, then the final value for ever.
    """

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._size = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._final: Any = None
        self._finished = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def finished(self) -> bool:
        return self._finished

    def _full(self) -> bool:
        return bool(self._items) and (
            len(self._items) >= self._max_items or self._size >= self._max_bytes
        )

    def put_nowait(self, item: Any, size: int = 0) -> None:
        """Add an item whatever the limits (for the few control messages)."""
        if not self._finished:
            self._items.append((item, size))
            self._size += size
            self._readable.set()

    async def put(self, item: Any, size: int) -> bool:
        """Add an item once there is room; ``False`` (dropped) if the mailbox is finished."""
        while self._full() and not self._finished:
            self._writable.clear()
            await self._writable.wait()
        if self._finished:
            return False
        self.put_nowait(item, size)
        return True

    async def get(self) -> Any:
        """The next item, or the final value once the items ran out after :meth:`finish`."""
        while not self._items and not self._finished:
            self._readable.clear()
            await self._readable.wait()
        if not self._items:
            return self._final
        item, size = self._items.popleft()
        self._size -= size
        if not self._full():
            self._writable.set()
        return item

    def finish(self, final: Any, *, discard: bool) -> None:
        """No more items: :meth:`get` returns ``final`` after what is queued (nothing, if
        ``discard``). Later calls only discard."""
        if discard:
            self._items.clear()
            self._size = 0
        if not self._finished:
            self._finished = True
            self._final = final
        self._readable.set()
        self._writable.set()


class AsgiRoomConnection(RoomConnection):
    """A websocket between a browser (through a Tornado handler) and an ASGI application."""

    def __init__(self, app: ASGIApp, scope: dict[str, Any], *, log: logging.Logger,
                 max_frames: int, max_bytes: int) -> None:
        self._app = app
        self._scope = scope
        self._log = log
        self._inbox = _Mailbox(max_frames, max_bytes)
        self._outbox = _Mailbox(max_frames, max_bytes)
        self._handshake: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._client_closed = False
        self.task: asyncio.Task[None] | None = None

    async def open(self, timeout: float) -> None:
        """Start the application and wait until it accepts or refuses the connection."""
        self._inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.get_running_loop().create_task(self._run())
        try:
            await asyncio.wait_for(asyncio.shield(self._handshake), timeout)
        except asyncio.TimeoutError:
            self._log.error("%s: the application neither accepted nor refused within %s s",
                            self._scope["path"], timeout)
            self._app_closed(close_codes.INTERNAL_ERROR, "the backend did not answer")
            self.close(close_codes.INTERNAL_ERROR)

    async def _run(self) -> None:
        code, reason = close_codes.NORMAL, ""
        try:
            await self._app(self._scope, self._inbox.get, self._send)
            if not self.accepted:
                code, reason = close_codes.INTERNAL_ERROR, "the backend exited without accepting"
        except asyncio.CancelledError:
            code, reason = close_codes.GOING_AWAY, "server shutting down"
            raise
        except Exception:
            self._log.exception("%s: the ASGI application failed", self._scope["path"])
            code, reason = close_codes.INTERNAL_ERROR, "backend error"
        finally:
            self._app_closed(code, reason)

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.send":
            data = message.get("bytes")
            if data is None:
                data = message.get("text")
            if data is None or self.close_code is not None:
                return
            await self._outbox.put(data, len(data))
        elif kind == "websocket.accept":
            if not self._handshake.done():
                self.accepted = True
                self._handshake.set_result(True)
        elif kind == "websocket.close":
            self._app_closed(message.get("code") or close_codes.NORMAL, message.get("reason") or "")
        else:
            raise ValueError(f"unsupported ASGI message type {kind!r}")

    def _app_closed(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        # Frames the application sent before closing still reach the browser.
        self._outbox.finish(None, discard=self._client_closed)
        self._inbox.finish({"type": "websocket.disconnect", "code": self.close_code},
                           discard=True)
        if not self._handshake.done():
            self._handshake.set_result(False)

    async def send(self, data: Frame) -> None:
        if self._client_closed:
            return
        message: dict[str, Any] = {"type": "websocket.receive"}
        message["bytes" if isinstance(data, bytes) else "text"] = data
        await self._inbox.put(message, len(data))

    async def receive(self) -> Frame | None:
        return await self._outbox.get()

    def close(self, code: int = close_codes.NORMAL) -> None:
        if self._client_closed:
            return
        self._client_closed = True
        self._outbox.finish(None, discard=True)
        # Frames the browser sent before leaving are still delivered (its last edits).
        self._inbox.finish({"type": "websocket.disconnect", "code": code}, discard=False)
        if not self._handshake.done():
            self._handshake.set_result(False)


class AsgiBackend(Backend):
    """The Django side as an ASGI application in this process, on this event loop."""

    def __init__(
        self,
        application: ASGIApp,
        *,
        host: str = "localhost",
        log: logging.Logger | None = None,
        request_timeout: float = 60.0,
        connect_timeout: float = 60.0,
        max_queued_frames: int = 64,
        max_queued_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.application = application
        self.host = host
        self.log = log or logging.getLogger(__name__)
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_queued_frames = max_queued_frames
        self.max_queued_bytes = max_queued_bytes
        self._connections: set[AsgiRoomConnection] = set()

    def _scope(self, kind: str, path: str, query: str, identity: Identity,
               headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
        scope: dict[str, Any] = {
            "type": kind,
            "asgi": dict(_ASGI),
            "http_version": "1.1",
            "scheme": "http" if kind == "http" else "ws",
            "path": unquote(path),
            "raw_path": path.encode("latin-1", errors="replace"),
            "query_string": query.encode("latin-1", errors="replace"),
            "root_path": "",
            "headers": [(b"host", self.host.encode()), *headers],
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", 0),
            SCOPE_KEY: identity,
        }
        if kind == "websocket":
            scope["subprotocols"] = []
        return scope

    async def request(self, method: str, path: str, *, identity: Identity, query: str = "",
                      body: bytes = b"", content_type: str | None = None) -> HttpResponse:
        headers = [(b"content-length", str(len(body)).encode())]
        if content_type:
            headers.append((b"content-type", content_type.encode("latin-1")))
        scope = self._scope("http", path, query, identity, headers)
        scope["method"] = method.upper()
        start: dict[str, Any] = {}
        chunks: list[bytes] = []
        complete = asyncio.Event()
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await complete.wait()  # a disconnect before the response would cancel the view
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    complete.set()

        try:
            await asyncio.wait_for(self.application(scope, receive, send), self.request_timeout)
        except asyncio.TimeoutError:
            raise BackendError(504, f"{method} {path}: no answer within "
                               f"{self.request_timeout} s") from None
        except Exception as exc:
            self.log.exception("%s %s: the ASGI application failed", method, path)
            raise BackendError(500, f"{method} {path}: backend error: {exc!r}") from exc
        finally:
            complete.set()
        if "status" not in start:
            raise BackendError(502, f"{method} {path}: the backend sent no response")
        content_type = None
        for name, value in start.get("headers") or ():
            if bytes(name).lower() == b"content-type":
                content_type = bytes(value).decode("latin-1")
        return HttpResponse(int(start["status"]), b"".join(chunks), content_type)

    async def connect(self, path: str, *, identity: Identity, query: str = "") -> RoomConnection:
        scope = self._scope("websocket", path, query, identity, [])
        connection = AsgiRoomConnection(self.application, scope, log=self.log,
                                        max_frames=self.max_queued_frames,
                                        max_bytes=self.max_queued_bytes)
        self._connections.add(connection)
        await connection.open(self.connect_timeout)
        if connection.task is not None:
            connection.task.add_done_callback(lambda _: self._connections.discard(connection))
        else:
            self._connections.discard(connection)
        return connection

    async def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (code 1001) and wait for the application to let them go."""
        connections = list(self._connections)
        for connection in connections:
            connection.close(close_codes.GOING_AWAY)
        tasks = [c.task for c in connections if c.task is not None and not c.task.done()]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            self.log.warning("a websocket of the backend did not close within %s s", timeout)
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
