"""The remote backend: a Django Channels service reached over HTTP and websockets.

Every request and connection carries an identity signed for it alone
(:data:`~jupyter_ydjango.api.identity.HEADER`, see
:func:`~jupyter_ydjango.api.identity.sign_identity`: bound to the method and path, with a
nonce), that the service verifies with the secret both sides share. The browser's ``Origin``,
``Cookie`` and ``Authorization`` headers are not forwarded: the Jupyter server checked them.

Backpressure: Tornado's websocket client holds at most one unread frame and reads the next
only when the handler took it; the handler takes each at once and counts what the browser did
not read yet against its send budget (a remote daphne would otherwise buffer it without
bound); frames from the browser are written to the service and flushed before the handler
reads the next one. Reconnecting after a lost connection is the browser's job (y-websocket
reconnects by itself).
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit, urlunsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClientConnection, WebSocketClosedError, websocket_connect

from jupyter_ydjango.api.identity import HEADER, Identity, secret_problem, sign_identity
from jupyter_ydjango.jupyter.backend import (
    Backend,
    BackendError,
    Frame,
    HttpResponse,
    RoomConnection,
)
from jupyter_ydjango.protocol import close_codes

#: HTTP statuses of a refused websocket handshake -> the close code the browser gets.
_REFUSALS = {400: 4400, 401: 4401, 403: 4403, 404: 4404}


def _forwardable(code: int | None) -> int:
    """The browser's close code if it may be sent on, else 1000."""
    if code is None or code in (1005, 1006, 1015) or not 1000 <= code <= 4999:
        return close_codes.NORMAL
    return code


class RefusedConnection(RoomConnection):
    """A connection the service refused (or that could not be made)."""

    def __init__(self, code: int, reason: str) -> None:
        self.close_code = code
        self.close_reason = reason

    async def send(self, data: Frame) -> None:
        return None

    async def receive(self) -> Frame | None:
        return None

    def close(self, code: int = close_codes.NORMAL) -> None:
        return None


class ProxyRoomConnection(RoomConnection):
    """A websocket to the remote service."""

    def __init__(self, connection: WebSocketClientConnection) -> None:
        self._connection = connection
        self._closed = False
        self.accepted = True

    async def send(self, data: Frame) -> None:
        if self._closed or self.close_code is not None:
            return
        try:
            await self._connection.write_message(data, binary=isinstance(data, bytes))
        except (WebSocketClosedError, StreamClosedError):
            return

    async def receive(self) -> Frame | None:
        message = await self._connection.read_message()
        if message is None:
            self.close_code = self._connection.close_code
            self.close_reason = self._connection.close_reason or ""
        return message

    def close(self, code: int = close_codes.NORMAL) -> None:
        if self._closed:
            return
        self._closed = True
        self._connection.close(_forwardable(code))


class ProxyBackend(Backend):
    """The Django side as a remote service at ``url`` (``http(s)://host:port[/prefix]``)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        max_message_size: int,
        log: logging.Logger | None = None,
        connect_timeout: float = 10.0,
        request_timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"remote URL must be http(s)://host[:port][/prefix], not {url!r}")
        if not secret:
            raise ValueError("a shared secret is needed to sign identities")
        if secret_problem(secret):
            raise ValueError(secret_problem(secret))
        self._http_base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        ws_scheme = "wss" if parts.scheme == "https" else "ws"
        self._ws_base = urlunsplit((ws_scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self._secret = secret
        self.max_message_size = max_message_size
        self.log = log or logging.getLogger(__name__)
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self._client = AsyncHTTPClient()

    def _headers(self, identity: Identity, method: str, path: str) -> dict[str, str]:
        # signed for the path as the service routes it: decoded, without our URL's prefix
        return {HEADER: sign_identity(identity, self._secret, method=method,
                                      path=unquote(urlsplit(path).path))}

    @staticmethod
    def _target(base: str, path: str, query: str) -> str:
        return f"{base}{path}?{query}" if query else f"{base}{path}"

    async def request(self, method: str, path: str, *, identity: Identity, query: str = "",
                      body: bytes = b"", content_type: str | None = None) -> HttpResponse:
        headers = self._headers(identity, method, path)
        if content_type:
            headers["Content-Type"] = content_type
        # a DELETE may carry a body too (a revocation names its subject in it); tornado
        # sends one only when told the method is non-standard
        body_deleted = method.upper() == "DELETE" and bool(body)
        has_body = method.upper() in ("POST", "PUT", "PATCH") or body_deleted
        request = HTTPRequest(
            self._target(self._http_base, path, query),
            method=method.upper(),
            headers=headers,
            body=body if has_body else None,
            allow_nonstandard_methods=body_deleted,
            follow_redirects=False,
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
            decompress_response=True,
        )
        try:
            response = await self._client.fetch(request, raise_error=False)
        except Exception as exc:  # DNS failure, TLS error...
            raise BackendError(502, f"{method} {path}: backend unreachable: {exc}") from exc
        if response.code == 599:
            raise BackendError(502, f"{method} {path}: backend unreachable: {response.error}")
        return HttpResponse(response.code, response.body or b"",
                            response.headers.get("Content-Type"))

    async def connect(self, path: str, *, identity: Identity, query: str = "") -> RoomConnection:
        request = HTTPRequest(
            self._target(self._ws_base, path, query),
            headers=self._headers(identity, "GET", path),
            connect_timeout=self.connect_timeout,
            request_timeout=self.request_timeout,
        )
        try:
            connection = await websocket_connect(request, max_message_size=self.max_message_size)
        except HTTPClientError as exc:
            code = _REFUSALS.get(exc.code, close_codes.INTERNAL_ERROR)
            self.log.info("%s: the backend refused the websocket with %s", path, exc.code)
            return RefusedConnection(code, f"refused by the backend ({exc.code})")
        except Exception as exc:
            self.log.error("%s: the backend is unreachable: %r", path, exc)
            return RefusedConnection(close_codes.INTERNAL_ERROR, "backend unreachable")
        return ProxyRoomConnection(connection)

    async def stop(self) -> None:
        """Nothing to release: handlers close their own connections."""
