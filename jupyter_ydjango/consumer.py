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

import pycrdt
from asgiref.sync import async_to_sync
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer

from jupyter_ydjango import metrics
from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.engines import UnsupportedClientId
from jupyter_ydjango.protocol.messages import (
    EMPTY_UPDATE,
    Message,
    ProtocolError,
    TooManyMessages,
    YMessageType,
    YSyncMessageType,
    count_messages,
    create_permission_denied_message,
    iter_messages,
    update_has_structs,
)
from jupyter_ydjango.rooms.backoff import Backoff
from jupyter_ydjango.rooms.budgets import OverBudget
from jupyter_ydjango.rooms.channel_layer import retry_layer
from jupyter_ydjango.rooms.relay import REMOTE, push_update, room_group_name
from jupyter_ydjango.rooms.room import Peer, Room, get_registry

logger = logging.getLogger(__name__)



class YjsConsumer(AsyncWebsocketConsumer):
    """A y-websocket server for one room per connection, on Django Channels."""

    #: The :class:`~jupyter_ydjango.rooms.room.Room` class of the rooms this consumer opens.
    room_class: type[Room] = Room
    #: Largest accepted frame in bytes; ``None`` reads the ``YDJANGO_MAX_MESSAGE_SIZE`` setting.
    max_message_size: int | None = None
    #: Most messages in one frame; ``None`` reads ``YDJANGO_MAX_MESSAGES_PER_FRAME``.
    max_messages_per_frame: int | None = None

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

    def awareness_user(self) -> dict[str, str]:
        """The fields of the ``user`` object of this connection's awareness states that the
        room sets, whatever the client claims: who the collaborators panel and the cursors
        show. Default: the Django user's user name (and full name, if any) if authenticated,
        else nothing (the client's word)."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return {}
        shown = {"username": user.get_username()}
        name = user.get_full_name() if hasattr(user, "get_full_name") else ""
        if name:
            shown["name"] = shown["display_name"] = name
        return shown

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
        self.peer = self.room.join(self._send_frame, self._close_slow, self.author_name(),
                                   self.awareness_user())

    async def disconnect(self, code: int) -> None:
        """Leave the room: the room's other clients learn that this client's cursors are gone."""
        await self._leave()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Handle one frame: check its framing, then decode and handle its messages one at a
        time, in order, letting the event loop run between two of them.

        A frame too large (4413), holding more messages than the limit (4429), or malformed
        (4400) closes its sender before any of it is handled; so does a message past one of
        the room's budgets (:class:`~jupyter_ydjango.rooms.budgets.OverBudget`), after the
        messages before it.
        """
        if self.peer is None:
            return
        if bytes_data is None:
            await self._refuse(close_codes.UNSUPPORTED_DATA, "text frame; the protocol is binary")
            return
        limit = self.max_message_size or get_setting("YDJANGO_MAX_MESSAGE_SIZE")
        if len(bytes_data) > limit:
            metrics.BUDGET_CLOSES.labels("frame").inc()
            await self._refuse(close_codes.TOO_BIG, f"frame of {len(bytes_data)} bytes > {limit}")
            return
        try:
            count_messages(bytes_data, self.max_messages_per_frame
                           or get_setting("YDJANGO_MAX_MESSAGES_PER_FRAME"))
            for index, message in enumerate(iter_messages(bytes_data)):
                if index:
                    await asyncio.sleep(0)  # the other rooms' clients are served meanwhile
                    if self.peer is None:
                        return  # closed meanwhile
                await self.receive_message(message)
        except TooManyMessages as exc:
            metrics.BUDGET_CLOSES.labels("messages").inc()
            await self._refuse(close_codes.TOO_MANY, str(exc))
        except OverBudget as exc:
            await self._refuse(exc.code, exc.reason)
        except UnsupportedClientId as exc:
            await self._refuse(close_codes.UNSUPPORTED_CLIENT_ID, str(exc))
        except ProtocolError as exc:
            await self._refuse(close_codes.PROTOCOL_ERROR, str(exc))

    async def receive_message(self, message: Message) -> None:
        """Dispatch one message to ``receive_sync``, ``receive_awareness``, ``receive_raw``
        or ``receive_query_awareness``. A :class:`ProtocolError` closes the connection."""
        if message.type is YMessageType.SYNC:
            await self.receive_sync(message)
        elif message.type is YMessageType.AWARENESS:
            self.room.apply_awareness(message.payload, self.peer)
        elif message.type is YMessageType.QUERY_AWARENESS:
            self.room.query_awareness(self.peer)
        else:
            await self.receive_raw(message.payload)

    async def receive_sync(self, message: Message) -> None:
        """SYNC: answer step 1 to this client only; apply step 2 and updates once.

        Changes from a reader (or to a room that takes none) are refused by their type,
        without touching the document: an update is answered with a permission-denied
        message, and so is a step 2 that inserts anything. A step 2 holding only a delete set
        is dropped silently: Yjs answers the server's step 1 with its whole delete set, so a
        reader's answer in a room with deletions holds one though it changes nothing.
        """
        if message.sync_type is YSyncMessageType.SYNC_STEP1:
            self.room.sync_step1(self.peer, message.payload)
        elif self.read_only or not self.room.accepts_edits:
            if message.payload != EMPTY_UPDATE and (
                    message.sync_type is YSyncMessageType.SYNC_UPDATE
                    or update_has_structs(message.payload)):
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
        backoff = Backoff()
        while True:
            try:
                if backoff.failures and self.group_name is not None and self.peer is not None:
                    await self.channel_layer.group_add(self.group_name, self.channel_name)
                    backoff.failures = 0  # joined again: the next failure is logged
                return await self._layer_receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.failed()
                log = logger.warning if backoff.failures == 1 else logger.debug
                log("room %s: channel layer failed (retrying): %r", self.room_name, exc)
            await asyncio.sleep(delay)

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


async def asend_doc_update(room_name: str, update: bytes, *, channel_layer: Any = None) -> None:
    """Push a document update into the live room ``room_name`` from server-side code.

    Each process that has the room loaded applies it once and sends it to its clients.
    Where no process has the room loaded, there is no live document to change.
    """
    await push_update(room_name, update, channel_layer=channel_layer)


def send_doc_update(room_name: str, update: bytes) -> None:
    """Synchronous :func:`asend_doc_update`, for views, tasks and management commands."""
    async_to_sync(asend_doc_update)(room_name, update)
