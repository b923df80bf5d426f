"""Jupyter handlers of jupyter-collaboration's server API, forwarded to the Django side.

They are thin: Jupyter authenticates the user and checks the ``contents`` permission, the
handler turns the user into an :class:`~jupyter_ydjango.api.identity.Identity` (``"write"`` if
Jupyter's authorizer lets them write contents, else ``"read"``), then hands the request to the
extension's :class:`~jupyter_ydjango.jupyter.backend.Backend`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from typing import Any, Protocol

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized, ws_authenticated
from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from tornado import web
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.jupyter.backend import (
    Backend,
    BackendError,
    HttpResponse,
    RoomConnection,
    client_close,
)
from jupyter_ydjango.jupyter.events import CollaborationEvents
from jupyter_ydjango.jupyter.guests import GuestIdentityProvider
from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.store.paths import hidden_by


class Extension(Protocol):
    """What the handlers need of the extension (:class:`~jupyter_ydjango.jupyter.app.YDjango`)."""

    max_message_size: int
    #: Bytes that may wait to be written to one browser.
    send_budget: int
    #: Seconds between two checks that a room websocket's user still has its access.
    reauthorize_interval: float
    #: The open room websockets (closed at shutdown).
    sockets: set[Any]
    #: jupyter-collaboration's events (clients joining and leaving rooms).
    events: CollaborationEvents | None

    async def get_backend(self) -> Backend:
        """The backend, once the Django side is ready."""

    async def renames_recorded(self) -> None:
        """Wait until the Django side has recorded the renames seen so far."""

#: The Jupyter authorization resource of collaborative documents (as jupyter-collaboration).
AUTH_RESOURCE = "contents"
#: Extra bytes Tornado accepts beyond ``max_message_size``, so that the Django side (which
#: closes with 4413, a code clients do not retry) is the one refusing oversized frames.
FRAME_SLACK = 1024 * 1024


@contextlib.contextmanager
def _no_cookies(handler: JupyterHandler) -> Iterator[None]:
    """Cookies an identity provider sets meanwhile (a login cookie for a token user) are
    dropped: an open websocket has no response to carry them (Tornado raises)."""
    handler.set_cookie = handler.clear_cookie = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del handler.set_cookie, handler.clear_cookie


async def request_identity(handler: JupyterHandler, *, again: bool = False) -> Identity | None:
    """The identity of the handler's user, or ``None`` if they may not even read contents.

    ``again``: ask the identity provider anew (a long-lived websocket's user may have been
    logged out, or their token revoked, since it opened) instead of the user it gave then.
    """
    user = handler.current_user
    if again:
        # Jupyter's identity provider answers with the user it found for this handler when it
        # opened (kept as ``_jupyter_current_user``, since jupyter_server 2.0): forgotten here,
        # so that the token or cookie of the websocket's request is checked anew.
        handler._jupyter_current_user = None
        with _no_cookies(handler):
            user = await ensure_async(handler.identity_provider.get_user(handler))
        handler._jupyter_current_user = user
    if not user:
        return None
    authorizer = handler.authorizer
    if await ensure_async(authorizer.is_authorized(handler, user, "write", AUTH_RESOURCE)):
        permission = "write"
    elif await ensure_async(authorizer.is_authorized(handler, user, "read", AUTH_RESOURCE)):
        permission = "read"
    else:
        return None
    identity_of = getattr(authorizer, "identity_of", None)  # the roles authorizer's
    if identity_of is not None:
        return identity_of(handler, user, permission)
    return Identity(
        username=user.username,
        permission=permission,
        name=user.name or "",
        display_name=user.display_name or "",
        initials=user.initials or "",
        color=user.color or "",
    )


def backend_path(handler: JupyterHandler) -> str:
    """The request's path (still percent-encoded) without the server's ``base_url``."""
    path = handler.request.path
    base = handler.base_url
    if base != "/" and path.startswith(base):
        return path[len(base) - 1 :]
    return path


class _ForwardingHandler(APIHandler):
    """Answers with what the Django side answers."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, extension: Extension) -> None:
        self.extension = extension

    async def forward(self) -> tuple[Identity, HttpResponse] | None:
        """Answer with the Django side's answer; the user and that answer (``None`` when
        the Django side could not be asked)."""
        identity = await request_identity(self)
        if identity is None:
            raise web.HTTPError(403, "not authorized to read contents")
        try:
            backend = await self.extension.get_backend()
            response = await backend.request(
                self.request.method or "GET",
                backend_path(self),
                identity=identity,
                query=self.request.query,
                body=self.request.body or b"",
                content_type=self.request.headers.get("Content-Type"),
            )
        except BackendError as exc:
            # Answered as Jupyter's API errors are, without formatting the message (a path
            # may hold "%").
            self.log.warning("%s %s: %s", self.request.method, self.request.path, exc)
            self.set_status(exc.status)
            self.finish(json.dumps({"message": str(exc), "reason": None}))
            return None
        self.set_status(response.status)
        if response.content_type:
            self.set_header("Content-Type", response.content_type)
        else:
            self.clear_header("Content-Type")
        self.finish(response.body)
        return identity, response


class SessionHandler(_ForwardingHandler):
    """``PUT {base_url}api/collaboration/session/{path}``: a document's ``fileId`` and
    ``sessionId``."""

    # Readers need a session too: their permission travels with their identity.
    @web.authenticated
    @authorized("read")
    async def put(self, path: str) -> None:
        await self.extension.renames_recorded()
        # answered as Jupyter's contents API answers a hidden file, by this server's
        # manager's rules: a remote service has a manager of its own (embedded, the Django
        # side asks this one itself)
        local = path.strip("/")
        if not self.extension.embedded and await hidden_by(self.contents_manager, local):
            raise web.HTTPError(404, f"file or directory does not exist: {local!r}")
        await self.forward()


class RoomStatusHandler(_ForwardingHandler):
    """``GET {base_url}api/ydjango/rooms/{fileId}``: the state of a document's room."""

    @web.authenticated
    @authorized("read")
    async def get(self, file_id: str) -> None:
        await self.forward()


class TimelineHandler(_ForwardingHandler):
    """``GET {base_url}api/collaboration/timeline/{path}``: a document's points, and a copy to
    move through them."""

    @web.authenticated
    @authorized("read")
    async def get(self, path: str) -> None:
        await self.extension.renames_recorded()
        await self.forward()


class HistoryAuthorsHandler(_ForwardingHandler):
    """``GET {base_url}api/ydjango/history/{path}``: who made each point of a document's
    timeline."""

    @web.authenticated
    @authorized("read")
    async def get(self, path: str) -> None:
        await self.extension.renames_recorded()
        await self.forward()


class UndoRedoHandler(_ForwardingHandler):
    """``PUT {base_url}api/collaboration/undo_redo/{roomId}``: move a timeline's copy, or
    restore the point it shows."""

    # Readers move their copy too; the Django side refuses their restores.
    @web.authenticated
    @authorized("read")
    async def put(self, room_id: str) -> None:
        await self.forward()


class ManagementHandler(_ForwardingHandler):
    """``{base_url}api/ydjango/roles/{path}`` and ``{base_url}api/ydjango/links/{path}``: who
    has which role there, the role links there; grants, links and revocations. The Django side
    answers (405 for a method a route has not) and lets only the owners and Django staff
    change them."""

    @web.authenticated
    @authorized("read")
    async def get(self, path: str) -> None:
        await self.forward()

    @web.authenticated
    @authorized("read")
    async def put(self, path: str) -> None:
        await self.forward()

    @web.authenticated
    @authorized("read")
    async def post(self, path: str) -> None:
        await self.forward()

    @web.authenticated
    @authorized("read")
    async def delete(self, path: str) -> None:
        await self.forward()


class LinksHandler(ManagementHandler):
    """``{base_url}api/ydjango/links/{path}``: role links, where guests may come in (the
    server's identity provider is the guests' one); 404 elsewhere, so that no link is made
    that would open nothing."""

    async def prepare(self) -> None:  # type: ignore[override]
        if not isinstance(self.identity_provider, GuestIdentityProvider):
            raise web.HTTPError(404, "role links need --ServerApp.identity_provider_class="
                                     "jupyter_ydjango.jupyter.guests.GuestIdentityProvider")
        await super().prepare()


class ForkHandler(_ForwardingHandler):
    """``{base_url}api/collaboration/fork/{roomId}``: list, make and delete forks; made and
    deleted forks are announced as jupyter-collaboration's ``fork`` events."""

    # Readers may list forks; the Django side refuses their changes.
    @web.authenticated
    @authorized("read")
    async def get(self, room_id: str) -> None:
        await self.forward()

    @web.authenticated
    @authorized("read")
    async def put(self, room_id: str) -> None:
        self._announce(await self.forward(), 201, "create")

    @web.authenticated
    @authorized("read")
    async def delete(self, fork_id: str) -> None:
        self._announce(await self.forward(), 200, "delete")

    def _announce(self, forwarded: tuple[Identity, HttpResponse] | None, status: int,
                  action: str) -> None:
        if forwarded is None or self.extension.events is None:
            return
        identity, response = forwarded
        if response.status != status:
            return
        try:
            answer = response.json()
            fork_roomid, fork_info = answer["fork_roomid"], answer["fork_info"]
        except (ValueError, TypeError, KeyError):
            self.log.warning("fork %s: the backend's answer names no fork", action)
            return
        self.extension.events.fork(fork_roomid, fork_info, identity.username, action)


class RoomHandler(WebSocketMixin, WebSocketHandler, JupyterHandler):
    """``{base_url}api/collaboration/room/{room_id}``: a y-websocket connection, relayed to
    the Django side frame by frame in both directions."""

    auth_resource = AUTH_RESOURCE

    def initialize(self, extension: Extension) -> None:
        self.extension = extension
        self.upstream: RoomConnection | None = None
        self._identity: Identity | None = None
        self._session_id = ""
        self._pump: asyncio.Task[None] | None = None
        self._recheck: asyncio.Task[None] | None = None
        self._gone = False
        self._joined = ""  # the room this client joined (reported to listeners)

    def set_default_headers(self) -> None:
        """No API headers on a websocket handshake (as Jupyter's kernel websockets)."""

    def get_compression_options(self) -> dict[str, Any] | None:
        return self.settings.get("websocket_compression_options", None)

    @property
    def max_message_size(self) -> int:  # type: ignore[override]
        return self.extension.max_message_size + FRAME_SLACK

    @ws_authenticated
    @authorized("read")
    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Refuse the upgrade (403) to users who may not read contents, then upgrade."""
        self._identity = await request_identity(self)
        if self._identity is None:
            raise web.HTTPError(403, "not authorized to read contents")
        await super().get(*args, **kwargs)

    async def open(self, room_id: str) -> None:  # type: ignore[override]
        super().open()  # keep-alive pings
        self._session_id = self.get_query_argument("sessionId", "")
        self.extension.sockets.add(self)
        assert self._identity is not None
        try:
            backend = await self.extension.get_backend()
            self.upstream = await backend.connect(
                backend_path(self), identity=self._identity, query=self.request.query
            )
        except BackendError as exc:
            self.log.error("room %s: %s", room_id, exc)
            self.close(close_codes.INTERNAL_ERROR, "backend unavailable")
            return
        if self._gone:  # the server began shutting down meanwhile
            self.upstream.close(close_codes.GOING_AWAY)
            return
        if self.upstream.accepted and self.extension.events is not None:
            self._joined = room_id
            self.extension.events.client_joined(room_id, self._identity.username)
        self._pump = asyncio.get_running_loop().create_task(self._pump_to_client(self.upstream))
        self._recheck = asyncio.get_running_loop().create_task(self._reauthorize())

    async def _reauthorize(self) -> None:
        """Ask Jupyter every ``reauthorize_interval`` seconds whether the user still has the
        access the websocket was opened with; close it if not (4401: no user any more, 4403:
        less access), so that a revoked user's open rooms do not outlive the revocation. A
        user who lost write access only reconnects as a reader."""
        assert self._identity is not None
        while not self._gone:
            await asyncio.sleep(self.extension.reauthorize_interval)
            if self._gone:
                return
            try:
                identity = await request_identity(self, again=True)
            except Exception:
                self.log.exception("room %s: cannot check the user's access", self.request.path)
                continue
            if identity is None or identity.username != self._identity.username:
                code, why = close_codes.UNAUTHORIZED, "access revoked"
            elif self._identity.can_write and not identity.can_write:
                code, why = close_codes.FORBIDDEN, "write access revoked"
            else:
                continue
            self.log.info("room %s: closing the websocket of %s: %s", self.request.path,
                          self._identity.username, why)
            if self.upstream is not None:
                self.upstream.close(code)
            self.close(code, why)
            return

    async def _pump_to_client(self, upstream: RoomConnection) -> None:
        """Write what the Django side sends to the browser, as it comes.

        Frames are taken from the Django side at once and counted until Tornado has written
        them to the browser's socket: a browser that does not read would otherwise hold them
        in the Django side (a remote daphne buffers them without bound). One that has more
        than the send budget waiting is disconnected with 4503; one frame larger than the
        budget still goes to a browser with nothing else waiting.
        """
        waiting = [0]  # bytes written to Tornado and not flushed yet

        def flushed(future: asyncio.Future[None], size: int) -> None:
            waiting[0] -= size
            if not future.cancelled():
                future.exception()  # a closed socket: on_close handles it

        try:
            while (data := await upstream.receive()) is not None:
                size = len(data)
                if waiting[0] and waiting[0] + size > self.extension.send_budget:
                    self.log.warning("room %s: disconnecting a client that falls behind "
                                     "(%d bytes waiting, budget %d)", self.request.path,
                                     waiting[0] + size, self.extension.send_budget)
                    upstream.close(close_codes.SLOW_PEER)
                    self.close(close_codes.SLOW_PEER, "the client does not read fast enough")
                    return
                waiting[0] += size
                written = self.write_message(data, binary=isinstance(data, bytes))
                written.add_done_callback(lambda future, size=size: flushed(future, size))
                # not kept while waiting for the next frame (it may be the whole document)
                del data
        except WebSocketClosedError:
            upstream.close(close_codes.ABNORMAL)
            return
        except Exception:
            self.log.exception("room %s: error while relaying to the client", self.request.path)
            upstream.close(close_codes.ABNORMAL)
            self.close(close_codes.INTERNAL_ERROR)
            return
        code, reason = client_close(upstream.close_code, upstream.close_reason,
                                    self._session_id)
        if code != upstream.close_code:
            self.log.debug("room %s: backend closed with %s, client gets %s",
                           self.request.path, upstream.close_code, code)
        self.close(code, reason)

    async def on_message(self, message: str | bytes) -> None:
        # Awaited by Tornado before it reads the next frame: the backpressure towards clients.
        if self.upstream is not None:
            await self.upstream.send(message)

    def on_close(self) -> None:
        self._gone = True
        if self._recheck is not None:
            self._recheck.cancel()
        self.extension.sockets.discard(self)
        if self._joined and self.extension.events is not None and self._identity is not None:
            self.extension.events.client_left(self._joined, self._identity.username)
            self._joined = ""
        if self.upstream is not None:
            self.upstream.close(self.close_code or close_codes.ABNORMAL)

    def shutdown(self) -> None:
        """Close the connection because the server stops (code 1001: clients reconnect)."""
        self._gone = True
        self.close(close_codes.GOING_AWAY, "server shutting down")
        if self.upstream is not None:
            self.upstream.close(close_codes.GOING_AWAY)
