"""The relay: a room's changes carried to the same room in other processes.

Each process that has a room loaded gives it one relay channel on the Channels layer and
adds it to the room's relay group. A change made in one process is applied there, then
published once to the group; every other process applies it once and fans it out to its
own peers. Nothing is relayed per connection.

Channel layers may lose messages (Redis pub/sub loses those published while a process is cut
off; channels-redis' lists drop them over capacity). Every published
message carries the publisher's sequence number; a receiver that sees a gap, or a heartbeat
announcing a sequence it has not seen, asks the publisher for what it lacks (a state-vector
exchange, as in SYNC step 1/2). A process that loads a room says hello with its state
vector and gets the others' state in reply, and gives them its own.

A process that dies says no goodbye. Each receiver notes when it last heard from each
publisher; one silent for :data:`SILENCE` heartbeats (it missed one) is taken for gone: the
awareness states of its clients are removed (no ghost cursors).

A change is stored (in the update log) by the process that received it from its client. Until
that process confirms it stored it (the ``stored`` field: its sequence number up to which its
own changes are stored), every receiver whose room stores changes keeps the change; the
changes of a publisher that goes away unconfirmed are stored by the receivers themselves
(:meth:`~jupyter_ydjango.rooms.room.Room.store_remote_updates`). A change may then be stored by
several processes: the log is a CRDT history, where a duplicate is harmless.

Relay messages (``type`` in the Channels sense):

* ``relay.hello`` {origin, seq, sv}: a process loaded the room.
* ``relay.update`` {origin, seq, stored, update}: a change; ``origin``-less ones are pushed by
  server-side code (:func:`jupyter_ydjango.consumer.send_doc_update`), and stored by every
  process that has the room.
* ``relay.awareness`` {origin, seq, awareness}: an awareness update from a peer.
* ``relay.heartbeat`` {origin, seq, stored}: the publisher's latest sequence number.
* ``relay.sync_request`` {origin, sv}, ``relay.sync_reply`` {origin, seq, stored, update, sv?,
  awareness?}: repair; a reply that carries ``sv`` asks for the reverse diff.
* ``relay.bye`` {origin, stored}: the process unloaded the room.

``stored`` is ``None`` from a room that does not store changes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import re
import time
from typing import Any, Protocol

from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.protocol.messages import EMPTY_UPDATE, ProtocolError
from jupyter_ydjango.rooms.channel_layer import retry_layer

logger = logging.getLogger(__name__)

#: Heartbeats of silence after which a publisher is taken for gone.
SILENCE = 2.0

_GROUP_CHARS = re.compile(r"[^a-zA-Z0-9\-_.]")
_MAX_GROUP_LENGTH = 99


class _Remote:
    def __repr__(self) -> str:
        return "REMOTE"


#: The origin of changes that came from the same room in another process.
REMOTE: Any = _Remote()


def room_group_name(room: str) -> str:
    """The Channels group of a room's consumers.

    A room name that is already a valid group name is used as is, so that code written for
    the seed API (``group_send(room_name, ...)``) keeps working; other names are made valid.
    """
    if not _GROUP_CHARS.search(room) and len(room) <= _MAX_GROUP_LENGTH:
        return room
    digest = hashlib.sha256(room.encode()).hexdigest()[:16]
    return f"ydjango.room.{_GROUP_CHARS.sub('_', room)[:60]}.{digest}"


#: The alias of the channel layer the relay uses where the project's ``CHANNEL_LAYERS``
#: defines it (the embedded settings do, with Redis: a pub/sub layer); otherwise the relay
#: uses the layer of the consumers.
RELAY_LAYER = "ydjango-relay"


def get_relay_layer(default: Any = None) -> Any:
    """The channel layer of the relay: the ``ydjango-relay`` layer if the project defines
    one, else ``default``."""
    from channels.layers import get_channel_layer
    from django.conf import settings

    if RELAY_LAYER in getattr(settings, "CHANNEL_LAYERS", {}):
        return get_channel_layer(RELAY_LAYER)
    return default


def relay_group_name(room: str) -> str:
    """The Channels group of a room's relay channels (one per process)."""
    return "ydjango.relay." + hashlib.sha256(room.encode()).hexdigest()[:32]


class RelayedRoom(Protocol):
    """What the relay needs of a room (:class:`jupyter_ydjango.rooms.room.Room` is one)."""

    name: str

    def apply_update(self, update: bytes, origin: Any = None) -> None: ...

    def apply_awareness(self, payload: bytes, origin: Any) -> None: ...

    def state_vector(self) -> bytes: ...

    def diff(self, state_vector: bytes | None = None) -> bytes: ...

    def local_awareness_update(self) -> bytes | None: ...

    def forget_remote_awareness(self, origin: str) -> None: ...


class RoomRelay:
    """Carries one room's changes between processes; see the module docstring."""

    def __init__(self, room: RelayedRoom, layer: Any, *, publish: bool, heartbeat: float) -> None:
        self.room = room
        self.layer = layer
        #: False on a single-process layer: only listen (for server-side pushes).
        self.publish = publish
        self.heartbeat = heartbeat
        self.group = relay_group_name(room.name)
        self.channel = ""
        self.seq = 0
        #: Other processes' relay channels -> the last sequence number seen from them.
        self.peers: dict[str, int] = {}
        #: Other processes' relay channels -> when they were last heard from (monotonic).
        self.heard: dict[str, float] = {}
        self.resyncs = 0
        #: Changes received from each publisher that it has not confirmed it stored yet.
        self._unstored: dict[str, collections.deque[tuple[int, bytes]]] = {}
        self._resyncing: dict[str, float] = {}
        self._outbox: asyncio.Queue[tuple[str | None, dict[str, Any]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._running = True

    async def start(self) -> None:
        """Join the relay group and, when publishing, greet the other processes."""
        # The default prefix matters: channels-redis serves all of a process's channels of
        # one prefix from one blocking pop; another prefix would wait behind it.
        what = f"room {self.room.name}: joining the relay group"
        wait = get_setting("YDJANGO_CHANNEL_LAYER_WAIT")
        self.channel = await retry_layer(self.layer.new_channel, what, wait)
        await retry_layer(lambda: self.layer.group_add(self.group, self.channel), what, wait)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._deliver())]
        if self.publish:
            self._tasks += [loop.create_task(self._beat()), loop.create_task(self._expire())]
            self._post(None, {"type": "relay.hello", "seq": self.seq,
                              "sv": self.room.state_vector()})

    async def stop(self) -> None:
        """Say goodbye, deliver what is queued (briefly), leave the group."""
        if self.publish:
            self._post(None, {"type": "relay.bye", "stored": self.room.stored_seq()})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._outbox.join(), timeout=2)
        self._running = False
        for task in self._tasks:
            task.cancel()
        # channels-redis' receive may absorb a cancellation; do not wait on it forever.
        await asyncio.wait(self._tasks, timeout=2)
        with contextlib.suppress(Exception):
            await self.layer.group_discard(self.group, self.channel)

    # --- publishing -----------------------------------------------------------------

    def publish_update(self, update: bytes) -> None:
        """Send a local change to the other processes."""
        if self.publish:
            stored = self.room.stored_seq()  # asked first: this change is not stored yet
            self.seq += 1
            self._post(None, {"type": "relay.update", "seq": self.seq, "stored": stored,
                              "update": update})

    def publish_awareness(self, payload: bytes) -> None:
        """Send a local peer's awareness update to the other processes."""
        if self.publish:
            self.seq += 1
            self._post(None, {"type": "relay.awareness", "seq": self.seq, "awareness": payload})

    def _post(self, target: str | None, message: dict[str, Any]) -> None:
        message["origin"] = self.channel
        self._outbox.put_nowait((target, message))

    async def _deliver(self) -> None:
        while True:
            target, message = await self._outbox.get()
            try:
                if target is None:
                    await self.layer.group_send(self.group, message)
                else:
                    await self.layer.send(target, message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # The receivers see the sequence gap and ask for a resync.
                logger.warning("room %s: relay could not send %s: %r",
                               self.room.name, message["type"], exc)
            finally:
                self._outbox.task_done()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                # Re-joining is idempotent and restores membership lost with a restarted broker.
                await self.layer.group_add(self.group, self.channel)
            except Exception as exc:
                logger.warning("room %s: relay could not rejoin its group: %r",
                               self.room.name, exc)
                continue
            self._post(None, {"type": "relay.heartbeat", "seq": self.seq,
                              "stored": self.room.stored_seq()})
            now = time.monotonic()
            for origin, asked in list(self._resyncing.items()):
                if now - asked > 2 * self.heartbeat:
                    del self._resyncing[origin]
                    self._request_resync(origin)

    async def _expire(self) -> None:
        """Forget the publishers that fell silent (checked four times a heartbeat)."""
        while True:
            await asyncio.sleep(self.heartbeat / 4)
            limit = time.monotonic() - SILENCE * self.heartbeat
            for origin, heard in list(self.heard.items()):
                if heard < limit:
                    logger.info("room %s: relay %s fell silent: taken for gone",
                                self.room.name, origin)
                    self._forget(origin)

    # --- receiving ------------------------------------------------------------------

    async def _listen(self) -> None:
        while self._running:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("room %s: relay receive failed: %r", self.room.name, exc)
                await asyncio.sleep(min(self.heartbeat, 1.0))
                continue
            origin = message.get("origin")
            if origin == self.channel:
                continue
            if origin is not None:
                self.heard[origin] = time.monotonic()
            handler = getattr(self, message.get("type", "").replace(".", "_"), None)
            if handler is None:
                logger.warning("room %s: unknown relay message %r", self.room.name,
                               message.get("type"))
                continue
            try:
                handler(origin, message)
            except ProtocolError as exc:
                logger.warning("room %s: bad relay message from %s: %s",
                               self.room.name, origin, exc)
            except Exception:
                logger.exception("room %s: error handling relay message", self.room.name)

    def relay_update(self, origin: str | None, message: dict[str, Any]) -> None:
        if origin is None:  # pushed by server-side code: nobody else stores it
            self.room.apply_update(message["update"], REMOTE)
            self.room.store_remote_updates([message["update"]])
            return
        self._track(origin, message["seq"])
        self.room.apply_update(message["update"], REMOTE)
        self._keep_unstored(origin, message["seq"], message["update"], message.get("stored"))

    def relay_awareness(self, origin: str, message: dict[str, Any]) -> None:
        self._track(origin, message["seq"])
        self.room.apply_awareness(message["awareness"], origin)

    def relay_hello(self, origin: str, message: dict[str, Any]) -> None:
        self.peers[origin] = message["seq"]
        self._reply(origin, message["sv"], ask_back=True)

    def relay_heartbeat(self, origin: str, message: dict[str, Any]) -> None:
        self._confirm_stored(origin, message.get("stored"))
        last = self.peers.get(origin)
        if last is None or message["seq"] > last:
            self._request_resync(origin)

    def relay_sync_request(self, origin: str, message: dict[str, Any]) -> None:
        self._reply(origin, message["sv"], ask_back=True)

    def relay_sync_reply(self, origin: str, message: dict[str, Any]) -> None:
        self._resyncing.pop(origin, None)
        self.peers[origin] = max(self.peers.get(origin, 0), message["seq"])
        self.room.apply_update(message["update"], REMOTE)
        if message["update"] != EMPTY_UPDATE:
            self._keep_unstored(origin, message["seq"], message["update"], message.get("stored"))
        if message.get("awareness"):
            self.room.apply_awareness(message["awareness"], origin)
        if message.get("sv") is not None:
            self._reply(origin, message["sv"], ask_back=False)

    def relay_bye(self, origin: str, message: dict[str, Any]) -> None:
        self._confirm_stored(origin, message.get("stored"))
        self._forget(origin)

    def _forget(self, origin: str) -> None:
        """A publisher went away: remove its clients' awareness, store what it did not."""
        self.peers.pop(origin, None)
        self.heard.pop(origin, None)
        self._resyncing.pop(origin, None)
        self.room.forget_remote_awareness(origin)
        unstored = self._unstored.pop(origin, None)
        if unstored:
            logger.info("room %s: storing %d changes that %s did not confirm",
                        self.room.name, len(unstored), origin)
            self.room.store_remote_updates([update for _, update in unstored])

    def _keep_unstored(self, origin: str, seq: int, update: bytes, stored: int | None) -> None:
        if self.room.stored_seq() is None:
            return  # this room stores nothing: nothing to keep
        self._unstored.setdefault(origin, collections.deque()).append((seq, update))
        self._confirm_stored(origin, stored)

    def _confirm_stored(self, origin: str, stored: int | None) -> None:
        """``origin`` stored its own changes up to sequence number ``stored``."""
        kept = self._unstored.get(origin)
        if stored is None or kept is None:
            return
        # a publisher's messages arrive in the order of their sequence numbers
        while kept and kept[0][0] <= stored:
            kept.popleft()

    def _track(self, origin: str, seq: int) -> None:
        last = self.peers.get(origin)
        if last is None or seq > last + 1:
            logger.info("room %s: relay gap from %s (last %s, got %s): resync",
                        self.room.name, origin, last, seq)
            self._request_resync(origin)
        self.peers[origin] = max(last or 0, seq)

    def _request_resync(self, origin: str) -> None:
        if origin in self._resyncing:
            return
        self._resyncing[origin] = time.monotonic()
        self.resyncs += 1
        self._post(origin, {"type": "relay.sync_request", "sv": self.room.state_vector()})

    def _reply(self, origin: str, state_vector: bytes, *, ask_back: bool) -> None:
        update = self.room.diff(state_vector)
        if not ask_back and update == EMPTY_UPDATE:
            return
        self._post(origin, {
            "type": "relay.sync_reply",
            "seq": self.seq,
            "stored": self.room.stored_seq(),
            "update": update,
            "sv": self.room.state_vector() if ask_back else None,
            "awareness": self.room.local_awareness_update(),
        })


async def push_update(room_name: str, update: bytes, *, channel_layer: Any = None) -> None:
    """Apply ``update`` to the live room ``room_name`` in every process that has it loaded
    (each applies it once and sends it to its clients); where none has, nothing changes."""
    from channels.layers import get_channel_layer

    layer = channel_layer or get_relay_layer(get_channel_layer())
    await layer.group_send(relay_group_name(room_name), {"type": "relay.update", "update": update})
