"""Django Channels consumers speaking the y-websocket protocol.

:class:`YjsConsumer` keeps the API of the consumer this project grew from (``ypy_websocket``'s
Django Channels consumer) and works out of the box::

    # urls.py / routing.py
    path("ws/<str:room>", YjsConsumer.as_asgi())

Subclass it to customise it:

* override :meth:`~YjsConsumer.make_room_name` to name the room of a connection;
* override :meth:`~YjsConsumer.make_ydoc` to build the room's document (from your database,
  with observers); unlike the seed, it is called **once per room**, when the first
  connection of the room arrives in this process, not once per connection;
* override :meth:`~YjsConsumer.connect` to authenticate, then ``await super().connect()``;
  set ``self.read_only = True`` before that for a connection that may only read;
* call :meth:`~YjsConsumer.group_send_message` to send raw bytes to every client of the room;
* push a document change from server-side code with :func:`send_doc_update` (synchronous)
  or :func:`asend_doc_update`.

What differs from the seed, by design: one authoritative ``YDoc`` per room per process
(``self.ydoc`` is that shared document); SYNC step 1 is answered to the asking client
only; a document change is applied once and fanned out once (to the room's other clients
here, and once per other process through the relay); awareness states are removed when
their connection closes; read-only connections cannot change the document; frames are
size-limited and malformed ones close only their sender.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict
from urllib.parse import parse_qs

import pycrdt
from asgiref.sync import async_to_sync
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from jupyter_ydjango.api.identity import SCOPE_KEY
from jupyter_ydjango.api.middleware import ERROR_KEY
from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.documents.room import CLOSE_NOT_FOUND, DocumentRoom, LoadError, new_room
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.protocol.engines import UnsupportedClientId
from jupyter_ydjango.protocol.messages import (
    Message,
    ProtocolError,
    YMessageType,
    YSyncMessageType,
    create_permission_denied_message,
    create_raw_json_message,
    decode_messages,
    read_raw_request,
)
from jupyter_ydjango.rooms.channel_layer import retry_layer
from jupyter_ydjango.rooms.relay import REMOTE, get_relay_layer, relay_group_name, room_group_name
from jupyter_ydjango.rooms.room import Peer, Room, find_room, get_registry
from jupyter_ydjango.store import records
from jupyter_ydjango.store.dispatch import run_db

logger = logging.getLogger(__name__)

# Close codes. Servers may only send 1000 and 3000-4999 (RFC 6455 7.4.2; daphne enforces
# it), so errors use application codes modelled on HTTP statuses. y-websocket clients do not
# reconnect after a 44xx close, which is right for these: the same frame would come again.
#: A malformed frame (bad varUint, unknown type, length past the end, invalid update).
CLOSE_PROTOCOL_ERROR = 4400
#: Refused by :class:`RoomConsumer`: no authenticated user.
CLOSE_UNAUTHORIZED = 4401
#: A frame larger than the limit.
CLOSE_TOO_BIG = 4413
#: An update with a client id the room's document cannot hold (a y-py room and a 53-bit id):
#: the room's engine needs upgrading (HTTP's 426).
CLOSE_UNSUPPORTED_CLIENT_ID = 4426
#: A text frame: the protocol is binary.
CLOSE_UNSUPPORTED_DATA = 4415


class YjsConsumer(AsyncWebsocketConsumer):
    """A y-websocket server for one room per connection, on Django Channels."""

    #: The :class:`~jupyter_ydjango.rooms.room.Room` class of the rooms this consumer opens.
    room_class: type[Room] = Room
    #: Largest accepted frame in bytes; ``None`` reads the ``YDJANGO_MAX_MESSAGE_SIZE`` setting.
    max_message_size: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.room_name: str | None = None
        self.group_name: str | None = None
        #: The room's document (shared by every connection of the room in this process).
        self.ydoc: pycrdt.Doc | Any = None
        self.room: Room | None = None
        self.peer: Peer | None = None
        #: Set to True in :meth:`connect` (before ``super().connect()``) for a reader.
        self.read_only = False

    # --- overridable hooks ------------------------------------------------------------

    def make_room_name(self) -> str:
        """Name the room of this connection. Default: the ``room`` keyword of the URL route."""
        return self.scope["url_route"]["kwargs"]["room"]

    async def make_ydoc(self) -> pycrdt.Doc:
        """Make the document of a room, once per room per process. Default: an empty
        :class:`pycrdt.Doc`.

        Override it to fill the document (from your database) or to add observers. It runs on
        the event loop, the thread the document must stay on; do blocking I/O through
        ``sync_to_async``. A ``y_py.YDoc`` is accepted too (the ``[ypy]`` extra), for code
        written for y-py; such a room refuses clients with 53-bit client ids (pycrdt's),
        closing them with 4426.
        """
        return pycrdt.Doc()

    def author_name(self) -> str:
        """Who this connection's changes are credited to in the update log (a user name).
        Default: the Django user's name if authenticated, else ``""`` (nobody)."""
        user = self.scope.get("user")
        return user.get_username() if user is not None and user.is_authenticated else ""

    async def make_room(self) -> Room:
        """Make the room (its document through :meth:`make_ydoc`); called once per room."""
        return self.room_class(self.room_name, await self.make_ydoc())

    async def connect(self) -> None:
        """Join the room and accept the socket.

        Subclasses authenticate first and then ``await super().connect()``; to refuse a
        client, ``await self.close(code)`` instead.
        """
        self.room_name = self.make_room_name()
        self.group_name = room_group_name(self.room_name)
        self.room = await get_registry(self.channel_layer).acquire(self.room_name, self.make_room)
        self.ydoc = self.room.doc
        if self.channel_layer is not None:
            await retry_layer(
                lambda: self.channel_layer.group_add(self.group_name, self.channel_name),
                f"room {self.room_name}: joining the room's group",
                get_setting("YDJANGO_CHANNEL_LAYER_WAIT"))
        await self.accept()
        self.peer = self.room.join(self._send_frame, self._close_slow, self.author_name())

    async def disconnect(self, code: int) -> None:
        """Leave the room: the room's other clients learn that this client's cursors are gone."""
        await self._leave()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Handle one frame: decode it, then handle each of its messages in order."""
        if self.peer is None:
            return
        if bytes_data is None:
            await self._refuse(CLOSE_UNSUPPORTED_DATA, "text frame; the protocol is binary")
            return
        limit = self.max_message_size or get_setting("YDJANGO_MAX_MESSAGE_SIZE")
        if len(bytes_data) > limit:
            await self._refuse(CLOSE_TOO_BIG, f"frame of {len(bytes_data)} bytes > {limit}")
            return
        try:
            for message in decode_messages(bytes_data):
                await self.receive_message(message)
        except UnsupportedClientId as exc:
            await self._refuse(CLOSE_UNSUPPORTED_CLIENT_ID, str(exc))
        except ProtocolError as exc:
            await self._refuse(CLOSE_PROTOCOL_ERROR, str(exc))

    async def receive_message(self, message: Message) -> None:
        """Dispatch one message to ``receive_sync``, ``receive_awareness``, ``receive_raw``
        or ``receive_query_awareness``. A :class:`ProtocolError` closes the connection."""
        if message.type is YMessageType.SYNC:
            await self.receive_sync(message)
        elif message.type is YMessageType.AWARENESS:
            self.room.apply_awareness(message.payload, self.peer)
        elif message.type is YMessageType.QUERY_AWARENESS:
            reply = self.room.awareness_message()
            if reply is not None:
                self.peer.push(reply)
        else:
            await self.receive_raw(message.payload)

    async def receive_sync(self, message: Message) -> None:
        """SYNC: answer step 1 to this client only; apply step 2 and updates once."""
        if message.sync_type is YSyncMessageType.SYNC_STEP1:
            self.room.sync_step1(self.peer, message.payload)
        elif self.read_only or not self.room.accepts_edits:
            if self.room.would_change(message.payload):
                self.peer.push(create_permission_denied_message(
                    "read-only connection" if self.read_only else "read-only room"))
        else:
            self.room.apply_update(message.payload, self.peer)

    async def receive_raw(self, payload: bytes) -> None:
        """A type-2 (RAW) message from the client. Default: ignored."""

    class WrappedMessage(TypedDict):
        """A message for the client, wrapped for the channel layer."""

        message: bytes

    async def send_message(self, message_wrapper: WrappedMessage) -> None:
        """Send a wrapped message to this client (the handler of ``send_message`` events)."""
        if self.peer is not None:
            self.peer.push(message_wrapper["message"])

    async def group_send_message(self, message: bytes) -> None:
        """Send a message to every client of the room, in every process."""
        await self.channel_layer.group_send(
            self.group_name, {"type": "send_message", "message": message}
        )

    async def doc_update(self, update_wrapper: dict[str, Any]) -> None:
        """Apply an update sent to the room's group as ``{"type": "doc_update", "update": …}``.

        This is the seed's way to push server-side changes; the first consumer of each
        process to receive it changes the document, which fans the change out once.
        Prefer :func:`send_doc_update`, which reaches each process once.
        """
        self.room.apply_update(update_wrapper["update"], REMOTE)

    # --- internals ------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Call the handler of a message (a frame, a group message), as Channels does, minus
        Channels' hop to the database thread before every message.

        Channels runs ``close_old_connections`` for every message in the one thread that
        also runs every ``database_sync_to_async`` call, so each frame waited behind the
        database work in progress there (update-log writes, writer leases): a process
        fell behind at a few hundred frames per second, with latencies growing to seconds.
        The database is only used through ``database_sync_to_async``, which closes stale
        connections itself, before and after each call.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    @property
    def channel_receive(self) -> Callable[[], Awaitable[dict[str, Any]]]:
        """What Channels' dispatch loop calls to read this connection's channel.

        Channels ends the connection when the layer's ``receive`` raises, which would drop
        every client of every room when Redis restarts. It is retried instead, and the
        connection re-joins its room's group once the layer answers again (a restarted
        Redis has forgotten the groups); the room relay repairs what was missed meanwhile.
        """
        return self._receive_retrying

    @channel_receive.setter
    def channel_receive(self, receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        self._layer_receive = receive

    async def _receive_retrying(self) -> dict[str, Any]:
        delay, failures = 0.1, 0
        while True:
            try:
                if failures and self.group_name is not None and self.peer is not None:
                    await self.channel_layer.group_add(self.group_name, self.channel_name)
                    failures = 0
                return await self._layer_receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log = logger.warning if failures == 1 else logger.debug
                log("room %s: channel layer failed (retrying): %r", self.room_name, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send_frame(self, frame: bytes) -> None:
        await self.send(bytes_data=frame)

    async def _close_slow(self, code: int) -> None:
        await self._leave()
        await self.close(code)

    async def _refuse(self, code: int, reason: str) -> None:
        logger.warning("room %s: closing connection %s (%d): %s",
                       self.room_name, self.channel_name, code, reason)
        await self._leave()
        await self.close(code, reason)

    async def _leave(self) -> None:
        if self.peer is not None:
            self.room.leave(self.peer)
            self.peer = None
        if self.room is not None:
            get_registry(self.channel_layer).release(self.room)
            self.room = None
            if self.channel_layer is not None:
                with contextlib.suppress(Exception):  # the layer may be down: leave anyway
                    await self.channel_layer.group_discard(self.group_name, self.channel_name)


class RoomConsumer(YjsConsumer):
    """The consumer of the shipped application: Django-authenticated users only.

    Anonymous clients are refused (close 4401 before the handshake completes) unless the
    ``YDJANGO_ALLOW_ANONYMOUS`` setting is true (development only).
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        authenticated = user is not None and user.is_authenticated
        if not authenticated and not get_setting("YDJANGO_ALLOW_ANONYMOUS"):
            logger.info("refused an unauthenticated client for %s", self.scope.get("path"))
            await self.close(CLOSE_UNAUTHORIZED)
            return
        await super().connect()


async def asend_doc_update(room_name: str, update: bytes, *, channel_layer: Any = None) -> None:
    """Push a document update into the live room ``room_name`` from server-side code.

    Each process that has the room loaded applies it once and sends it to its clients.
    Where no process has the room loaded, there is no live document to change.
    """
    layer = channel_layer or get_relay_layer(get_channel_layer())
    await layer.group_send(relay_group_name(room_name), {"type": "relay.update", "update": update})


def send_doc_update(room_name: str, update: bytes) -> None:
    """Synchronous :func:`asend_doc_update`, for views, tasks and management commands."""
    async_to_sync(asend_doc_update)(room_name, update)


#: Close code: a room of a document type no format serves (neither ours nor a jupyter_ydoc
#: class): the stock frontend reports a "bad request" for the file and does not retry.
CLOSE_UNKNOWN_TYPE = 4400

#: Close code: the client's ``sessionId`` names another history of the document (the Jupyter
#: side turns it into jupyter-collaboration's close 1003 ``unknown_session``, reloadable).
CLOSE_STALE_SESSION = 4409


class _IdentifiedConsumer(YjsConsumer):
    """A consumer that needs the identity set by :class:`~.middleware.IdentityMiddleware`."""

    async def refuse(self, code: int, reason: str = "") -> None:
        """Refuse the client with a close code it can read (a websocket refused before the
        handshake only gets an HTTP 403, whatever the reason), and a short reason."""
        await self.accept()
        await self.close(code, reason or None)

    async def connect(self) -> None:
        self.identity = self.scope.get(SCOPE_KEY)
        if self.identity is None:
            logger.info("refused %s: %s", self.scope.get("path"),
                        self.scope.get(ERROR_KEY) or "no identity")
            await self.refuse(CLOSE_UNAUTHORIZED)
            return
        self.read_only = self.read_only or not self.identity.can_write
        await super().connect()

    def author_name(self) -> str:
        return self.identity.username


class AwarenessConsumer(_IdentifiedConsumer):
    """A transient awareness-only room (``JupyterLab:globalAwareness``): presence, no document.

    Nothing is stored and the room's document cannot be changed.
    """

    def make_room_name(self) -> str:
        return self.scope["url_route"]["kwargs"]["room_id"]

    async def connect(self) -> None:
        self.read_only = True
        await super().connect()


class DocumentConsumer(_IdentifiedConsumer):
    """The rooms of JupyterLab's collaborative documents: ``{format}:{type}:{fileId}``.

    The room's document is a file under the notebook root, stored in the database and saved
    back (:class:`~jupyter_ydjango.documents.room.DocumentRoom`). Clients are refused with a close
    code before the handshake: 4400 a document type no format serves (see
    :func:`~jupyter_ydjango.formats.ydoc.find_format`), 4401 no identity, 4404 unknown room or
    file, 4403 a path outside the root, 4409 a ``sessionId`` of another history, 4422 a file
    that is not a document of the room's type (what Jupyter refuses to open: the close reason
    says why, in a sentence for its users), 4500 a file that cannot be loaded.
    A RAW ``save`` request saves now and is answered ``{"type": "save", "responseTo": id,
    "status": "success" | "skipped" | "failed"}``: ``"success"`` whenever the file holds the
    document (whoever wrote it), ``"failed"`` when it cannot be written.
    """

    room_class = DocumentRoom

    def make_room_name(self) -> str:
        return self.document.room_name

    async def connect(self) -> None:
        room_id = self.scope["url_route"]["kwargs"]["room_id"]
        kind, _, file_id = room_id.rpartition(":")
        file_format, _, file_type = kind.partition(":")
        doc_format = find_format(file_format, file_type)
        if doc_format is None:
            logger.info("refused room %s: unknown document type", room_id)
            await self.refuse(CLOSE_UNKNOWN_TYPE, f"unknown document type {kind!r}")
            return
        loaded = find_room(room_id)  # a co-editor joining: no database query
        if isinstance(loaded, DocumentRoom):
            document = loaded.document
        else:
            document = await run_db(records.get_document, file_id)
        if document is None or (document.format, document.type) != (file_format, file_type):
            logger.info("refused room %s: no such document", room_id)
            await self.refuse(CLOSE_NOT_FOUND)
            return
        session_id = parse_qs(self.scope.get("query_string", b"").decode()).get("sessionId")
        if session_id and session_id[0] and session_id[0] != str(document.session_id):
            logger.info("refused room %s: unknown session %s", room_id, session_id[0])
            await self.refuse(CLOSE_STALE_SESSION)
            return
        self.document, self.doc_format = document, doc_format
        try:
            await super().connect()
        except LoadError as exc:
            logger.error("room %s: cannot load: %s", room_id, exc)
            await self.refuse(exc.code, exc.summary)
            return
        if self.peer is not None and not self.read_only:
            try:  # the names the timeline's authors are shown with
                await run_db(records.remember_author, self.identity.username,
                             self.identity.name, self.identity.display_name)
            except Exception as exc:  # the names can wait; the edits must not
                logger.warning("room %s: cannot record the names of %s: %r", room_id,
                               self.identity.username, exc)

    async def make_room(self) -> Room:
        return new_room(self.document, self.doc_format)

    async def receive_raw(self, payload: bytes) -> None:
        action, request_id = read_raw_request(payload)
        if action == "save":
            asyncio.get_running_loop().create_task(self._save(request_id))

    async def _save(self, request_id: int | None) -> None:
        # A reader's request saves too (as jupyter-collaboration's): it writes what the
        # room's writers made, nothing of the reader's own.
        room, peer = self.room, self.peer
        try:
            status = await room.save()
        except Exception:
            logger.exception("room %s: save failed", self.room_name)
            status = "failed"
        if peer is not None:
            peer.push(create_raw_json_message(
                {"type": "save", "responseTo": request_id, "status": status}
            ))
