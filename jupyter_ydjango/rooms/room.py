"""Rooms: one authoritative YDoc per room per process, the peers connected to it, awareness.

A :class:`Room` is the meeting point of the data path. Connections (consumers) join it as
:class:`Peer` objects; every change to the room's document, whoever makes it, is observed
once and fanned out once: to the room's other synced peers and, through the room's
:class:`~jupyter_ydjango.rooms.relay.RoomRelay`, to the same room in other processes.

Everything here runs on the event loop's thread; the document never leaves it (pycrdt
documents are bound to the thread that made them). The room reaches its document through an
:class:`~jupyter_ydjango.protocol.engines.Engine`, in bytes.

The lifecycle follows named hooks a subclass may override: :meth:`Room.on_load` (after the
document is made, before the first peer joins), :meth:`Room.on_change` (after every change),
:meth:`Room.on_unload` (when the room is dropped after its idle delay).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from jupyter_ydjango import metrics
from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.engines import decode_state_vector, engine_for, update_held
from jupyter_ydjango.protocol.messages import (
    EMPTY_UPDATE,
    AwarenessEntry,
    StateTooLarge,
    create_awareness_message,
    create_sync_step1_message,
    create_sync_step2_message,
    create_update_message,
    decode_awareness_update,
    encode_awareness_update,
)
from jupyter_ydjango.rooms.budgets import Budgets, OverBudget
from jupyter_ydjango.rooms.owners import Owners
from jupyter_ydjango.rooms.pending import PendingChanges
from jupyter_ydjango.rooms.relay import REMOTE, RoomRelay, get_relay_layer
from jupyter_ydjango.signals import room_loaded, room_unloaded

logger = logging.getLogger(__name__)


#: The state vector of an empty document: what a client that holds nothing sends in SYNC step 1.
EMPTY_STATE_VECTOR = b"\x00"

#: Origin of changes a room replays from its stored history while loading: they are neither
#: published to other processes nor stored again.
HISTORY = "history"

SendFrame = Callable[[bytes], Awaitable[None]]
ClosePeer = Callable[[int], Awaitable[None]]


#: What a queued frame costs beyond its bytes (the bytes object and the queue's slot): tiny
#: frames count too.
FRAME_OVERHEAD = 64

#: A frame built when the peer's writer reaches it (``None``: nothing to send then).
BuildFrame = Callable[[], "bytes | None"]

#: How many answers of one kind (:meth:`Peer.push_coalesced`) a peer gets at once, and how many
#: per second after that. A client asks for the document once when it connects (and a test's
#: barrier a few times); one that keeps asking waits for its answers, which then cost the room
#: at most ANSWER_RATE diffs per second.
ANSWER_BURST = 20
ANSWER_RATE = 5.0


def shown_as(state: str, user: Mapping[str, str]) -> str:
    """An awareness state (JSON) whose ``user`` object holds ``user``'s fields instead of
    what the client claimed; a state without a ``user`` object is left as it is (it shows
    no one). JupyterLab's collaborators panel and cursors read the name there."""
    try:
        parsed = json.loads(state)
    except ValueError:
        return state
    if not isinstance(parsed, dict) or not isinstance(parsed.get("user"), dict):
        return state
    shown = parsed["user"]
    if all(shown.get(key) == value for key, value in user.items()):
        return state  # the usual case: the frontend shows the identity Jupyter gave it
    shown.update(user)
    return json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))


class Peer:
    """One connection to a room, as the room sees it.

    Frames pushed to a peer are queued and written by one task, in order. The queue is
    bounded in bytes, not frames (``send_budget``): a peer that has more waiting than that is
    closed with 4503 instead of growing without bound (one frame larger than the budget, such
    as a joiner's whole document, still goes to a peer with nothing else waiting).

    Answers whose cost grows with the document or the room (the answer to a SYNC step 1, the
    awareness states asked for by QUERY_AWARENESS) are queued with :meth:`push_coalesced`:
    built when the writer reaches them, once however many requests came meanwhile.
    """

    def __init__(self, room: Room, send: SendFrame, close: ClosePeer, send_budget: int,
                 author: str = "", user: Mapping[str, str] | None = None) -> None:
        self.room = room
        #: Who is connected (a user name; ``""`` if unknown): the author of its changes.
        self.author = author
        #: The fields of the ``user`` object of this connection's awareness states that the
        #: room sets from its authenticated identity, whatever the client claims (empty: the
        #: client's word).
        self.user: Mapping[str, str] = user or {}
        #: True once the peer asked for the document (SYNC step 1): only then does it get
        #: the room's updates, so nothing reaches it before its own handshake started.
        self.synced = False
        #: Awareness client ids this connection has announced (removed when it leaves).
        self.awareness_ids: set[int] = set()
        #: Bytes waiting to be written to this peer (with :data:`FRAME_OVERHEAD` each).
        self.queued_bytes = 0
        self.send_budget = send_budget
        self._send = send
        self._close = close
        self._queue: asyncio.Queue[bytes | str] = asyncio.Queue()
        self._coalesced: dict[str, BuildFrame] = {}
        # key -> (answers that may be built now, when that was counted)
        self._allowance: dict[str, tuple[float, float]] = {}
        self._stopped = False
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def push(self, frame: bytes) -> None:
        """Queue a frame for this peer (never blocks)."""
        if self._stopped:
            return
        cost = len(frame) + FRAME_OVERHEAD
        if self.queued_bytes + cost > self.send_budget and self.queued_bytes > 0:
            self.over_budget(f"{self.queued_bytes + cost} bytes waiting to be sent")
            return
        self.queued_bytes += cost
        self._queue.put_nowait(frame)

    def push_coalesced(self, key: str, build: BuildFrame) -> None:
        """Queue a frame that ``build`` makes when the writer reaches it. While one of ``key``
        waits, another replaces its builder and takes no place in the queue: a burst of the
        same request is answered once, with what is true when the answer is sent."""
        if self._stopped:
            return
        if key not in self._coalesced:
            self._queue.put_nowait(key)
        self._coalesced[key] = build

    def over_budget(self, reason: str) -> None:
        """Close this peer with 4503: it does not read what it is sent fast enough."""
        if self._stopped:
            return
        logger.warning("room %s: closing a peer that falls behind (%s, budget %d)",
                       self.room.name, reason, self.send_budget)
        metrics.BUDGET_CLOSES.labels("send").inc()
        self.disconnect(close_codes.SLOW_PEER)

    def disconnect(self, code: int) -> None:
        """Stop writing to this peer and close its connection with ``code``."""
        if self._stopped:
            return
        self.stop()
        asyncio.get_running_loop().create_task(self._close(code))

    async def _write(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, str):
                await self._wait_for_allowance(item)
                try:
                    frame = self._coalesced.pop(item)()
                except Exception:  # a request the checks let through: close its sender
                    logger.exception("room %s: cannot answer a peer's request", self.room.name)
                    self._stopped = True  # (this task ends here: nothing cancels it)
                    asyncio.get_running_loop().create_task(self._close(close_codes.PROTOCOL_ERROR))
                    return
                if frame is None:
                    continue
                cost = 0  # built now: it never waited in the queue
            else:
                frame, cost = item, len(item) + FRAME_OVERHEAD
            try:
                await self._send(frame)
            except Exception as exc:  # the socket is gone; the consumer's disconnect cleans up
                logger.debug("room %s: stopped writing to a peer: %r", self.room.name, exc)
                return
            finally:
                self.queued_bytes -= cost
            # Not kept while waiting for the next frame: a joiner's last frame is often the
            # whole document (its SYNC step 2), and idle peers would each hold a copy.
            del frame, item

    async def _wait_for_allowance(self, key: str) -> None:
        now = time.monotonic()
        tokens, since = self._allowance.get(key, (float(ANSWER_BURST), now))
        tokens = min(float(ANSWER_BURST), tokens + (now - since) * ANSWER_RATE)
        if tokens < 1:
            await asyncio.sleep((1 - tokens) / ANSWER_RATE)
            now, tokens = time.monotonic(), 1.0
        self._allowance[key] = (tokens - 1, now)

    def stop(self) -> None:
        """Stop writing to this peer."""
        self._stopped = True
        self._writer.cancel()


class Room:
    """A document shared by the peers that joined it.

    Subclass it for persistence or other side effects and pass the subclass as
    ``room_class`` of the consumer; override the lifecycle hooks, not the data path.
    """

    #: Seconds the room remembers the clock of a client whose awareness state was removed
    #: (so that an echo of its old state is not taken for it): twice y-protocols' 30 s
    #: timeout, after which every client has forgotten it too.
    awareness_memory = 60.0

    def __init__(self, name: str, doc: Any, budgets: Budgets | None = None) -> None:
        self.name = name
        #: What each connection may make the room hold (default: the ``YDJANGO_*`` settings).
        self.budgets = budgets or Budgets.from_settings()
        #: The document, as ``make_ydoc()`` made it: a :class:`pycrdt.Doc` (or a ``y_py.YDoc``).
        self.doc = doc
        self.engine = engine_for(doc)
        self.peers: set[Peer] = set()
        self.relay: RoomRelay | None = None
        #: A room that stores its changes sets this, and queues its changes there.
        self.pending: PendingChanges | None = None
        self.loaded_at = time.monotonic()
        # client id -> (clock, JSON state); kept for awareness_memory after removal so that
        # clocks stay monotonic.
        self._awareness: dict[int, tuple[int, str]] = {}
        # client id -> when its state was removed (oldest first)
        self._removed_at: dict[int, float] = {}
        # client id -> who announced its present state: a Peer of this process, or the relay
        # origin of another process's peer; absent once removed.
        self._owners: dict[int, Peer | str] = {}
        self._origin: Any = None
        # SYNC step 2 of the whole document, for joiners that hold nothing (see sync_step1)
        self._whole_frame: bytes | None = None
        self.engine.observe(self._after_transaction)

    # --- lifecycle hooks ----------------------------------------------------------------

    async def on_load(self) -> None:
        """Called once after the document is made, before any peer joins."""

    def on_change(self, update: bytes, origin: Any) -> None:
        """Called after every change of the document, with its encoded update.

        ``origin`` is the :class:`Peer` that sent it, :data:`~jupyter_ydjango.rooms.relay.REMOTE`
        for a change from another process, :data:`HISTORY` for stored history replayed by
        :meth:`on_load`, or ``None`` for one made by server-side code.
        Runs synchronously on the event loop: schedule slow work, do not do it here.
        """

    def on_incomplete(self, update: bytes, origin: Any) -> None:
        """Called after an update was applied of which a part waits for changes it builds on
        (they are on their way: from another process, or from a client that reconnects).
        That part reaches :meth:`on_change` only once they arrive; a room that stores its
        changes stores ``update`` as it came, so that nothing is lost if the room goes first.
        ``origin`` as for :meth:`on_change`. Default: nothing."""

    async def can_unload(self) -> bool:
        """Called after the idle delay, before :meth:`on_unload`: ``False`` keeps the room
        loaded, and the registry asks again after another delay (a room holding changes it
        cannot store yet keeps them). Not asked at shutdown. Default: ``True``."""
        return True

    async def on_unload(self) -> None:
        """Called once when the room is dropped, after its last peer left and the idle delay."""

    def stored_seq(self) -> int | None:
        """For a room that stores its changes (it has :attr:`pending`): the relay sequence
        number up to which the changes this process published are stored (those after it
        may not be yet). ``None``: this room stores nothing."""
        return None if self.pending is None else self.pending.stored_seq(self.relay)

    def store_remote_updates(self, updates: list[bytes]) -> None:
        """Store changes that came from another process, which went away without confirming
        that it stored them (or server-side pushes, which no process stores otherwise):
        they are queued in :attr:`pending`. A room that stores nothing ignores them."""
        if self.pending is not None:
            self.pending.unconfirmed(updates)

    # --- peers --------------------------------------------------------------------------

    def join(self, send: SendFrame, close: ClosePeer, author: str = "",
             user: Mapping[str, str] | None = None) -> Peer:
        """Add a connection (of the user named ``author``, if known, whose awareness states
        show ``user``: see :attr:`Peer.user`); it is sent our SYNC step 1 and the known
        awareness states."""
        peer = Peer(self, send, close, self.budgets.send_bytes, author, user)
        self.peers.add(peer)
        metrics.CONNECTIONS.inc()
        peer.push(create_sync_step1_message(self.engine.state_vector()))
        awareness = self.awareness_message()
        if awareness is not None:
            peer.push(awareness)
        return peer

    def ask_for_missing(self, peer: Peer) -> None:
        """Send a peer our SYNC step 1 again: it answers with what it holds and we lack.

        For a peer that may write from now on: what it made while it could only read was
        refused, and its later changes build on it (they would wait for it forever)."""
        peer.push(create_sync_step1_message(self.engine.state_vector()))

    def leave(self, peer: Peer) -> None:
        """Remove a connection and announce that its awareness states are gone."""
        if peer not in self.peers:
            return
        self.peers.discard(peer)
        metrics.CONNECTIONS.dec()
        peer.stop()
        gone = self._remove_awareness(peer.awareness_ids)
        peer.awareness_ids.clear()
        if gone:
            self._fan_out_awareness(encode_awareness_update(gone), origin=peer)

    # --- document -----------------------------------------------------------------------

    def sync_step1(self, peer: Peer, state_vector: bytes) -> None:
        """Answer a peer's SYNC step 1 with what it lacks; from now on it gets updates.

        The answer is computed when the peer's writer reaches it, once for a burst of step 1s
        (the last one's: a client's state only grows), so that a client repeating step 1
        costs one diff per frame it reads, not one per request. Most joiners hold nothing yet
        (an empty state vector): they all get one shared frame of the whole document, encoded
        once per version of it, rather than a copy each.

        :raises ProtocolError: ``state_vector`` cannot be decoded.
        """
        decode_state_vector(state_vector)  # refused now, not when the answer is built
        peer.push_coalesced("sync_step2", lambda: self._sync_step2(state_vector))
        peer.synced = True

    def _sync_step2(self, state_vector: bytes) -> bytes:
        if state_vector == EMPTY_STATE_VECTOR:
            if self._whole_frame is None:
                self._whole_frame = create_sync_step2_message(self.engine.diff())
            return self._whole_frame
        return create_sync_step2_message(self.engine.diff(state_vector))

    def whole_document_is(self, update: bytes) -> None:
        """Tell the room that ``update`` holds its whole document as it is now (the file just
        imported): joiners get it as their SYNC step 2 without the document being encoded.
        Any change to the document forgets it."""
        self._whole_frame = create_sync_step2_message(update)

    def apply_update(self, update: bytes, origin: Any = None) -> None:
        """Apply an update to the document; the change is fanned out by the observer."""
        if update == EMPTY_UPDATE:
            return
        self._origin = origin
        try:
            self.engine.apply_update(update)
        finally:
            self._origin = None
        if origin is not HISTORY and not update_held(update, self.engine.state_vector()):
            self._awaiting(update, origin)

    def _awaiting(self, update: bytes, origin: Any) -> None:
        """An update whose dependencies the document lacks was applied: the part that waits
        for them is in no change the observer sees. It goes to the other processes as it
        came (one of them may hold what it builds on), and to :meth:`on_incomplete`."""
        logger.info("room %s: an update waits for changes it builds on", self.name)
        if self.relay is not None and origin is not REMOTE:
            self.relay.publish_update(update)
        self.on_incomplete(update, origin)

    @property
    def accepts_edits(self) -> bool:
        """Whether the room takes changes from its peers now (a subclass may refuse them
        all: a file that is not writable). Default: always."""
        return True

    def state_vector(self) -> bytes:
        """The document's state vector."""
        return self.engine.state_vector()

    def diff(self, state_vector: bytes | None = None) -> bytes:
        """The update a peer at ``state_vector`` lacks (the whole document if ``None``)."""
        return self.engine.diff(state_vector)

    def _after_transaction(self, update: bytes) -> None:
        try:
            if update == EMPTY_UPDATE:
                return
            self._whole_frame = None
            origin = self._origin
            if origin is not HISTORY:
                metrics.UPDATES.inc()
            frame = create_update_message(update)
            for peer in self.peers:
                if peer.synced and peer is not origin:
                    peer.push(frame)
            if self.relay is not None and origin is not REMOTE and origin is not HISTORY:
                self.relay.publish_update(update)
            self.on_change(update, origin)
        except Exception:
            # An exception must not cross into the engine's transaction commit.
            logger.exception("room %s: error while fanning out a change", self.name)

    # --- awareness ----------------------------------------------------------------------

    def awareness_states(self) -> list[str]:
        """The JSON awareness states of the room's clients, as they sent them."""
        return [state for _clock, state in list(self._awareness.values())]

    def apply_awareness(self, payload: bytes, origin: Any) -> None:
        """Record an awareness update from a peer (or the relay) and relay it to the others.

        Only entries newer than what the room knows are relayed (y-protocols' rule): Yjs
        clients echo every awareness change they receive, and relaying echoes would cost
        every renewal round N² frames. What a peer sends is answered to it as well: an idle
        client alone in a room would otherwise receive nothing, and y-websocket closes a
        connection that received nothing for 30 s (whose state the room then removes).

        A client id belongs to the connection (or, through the relay, the process) that
        announced its present state. Another connection's entries for it are echoes and are
        ignored: they never take the id over, nor remove it (y-protocols removes a remote
        state that it heard nothing of for 30 s, and y-websocket then sends that removal: a
        slow or sleeping client would otherwise remove people who are there). Only a newer
        state from a connection of the same user moves an id to another connection: that is
        the client itself, connected again before its old connection was seen to close.
        Another user's connection can neither take it nor change it: nobody can show a
        cursor or a name as someone else's.

        A peer that announces a state for a client the room removed, at a clock not above the
        removal's, is a client coming back (its connection was lost; it announces itself with
        the clock it had): the room tells it of the removal, and y-protocols then raises the
        client's clock and announces its state again, which everyone accepts.

        A connection's states show the user it is authenticated as (:func:`shown_as`), so
        that nobody can show another name than their own.

        A peer's states are limited in size and in number of client ids
        (:class:`~jupyter_ydjango.rooms.budgets.Budgets`): past them, :class:`OverBudget`
        is raised before anything of the update is recorded.
        """
        peer = origin if isinstance(origin, Peer) else None
        try:
            entries = decode_awareness_update(
                payload, None if peer is None else self.budgets.awareness_state)
        except StateTooLarge as exc:
            raise OverBudget(close_codes.TOO_BIG, str(exc), "awareness_state") from None
        if peer is not None:
            announced = peer.awareness_ids | {e.client_id for e in entries if not e.removed}
            if len(announced) > self.budgets.awareness_clients:
                raise OverBudget(close_codes.TOO_MANY,
                                 f"more than {self.budgets.awareness_clients} awareness "
                                 "client ids on one connection", "awareness_clients")
        now = time.monotonic()
        self._forget_removed(now)
        accepted = []
        outdated = []
        for entry in entries:
            known = self._awareness.get(entry.client_id)
            owner = self._owners.get(entry.client_id)
            if owner is not None and owner != origin and known is not None and (
                    entry.removed or entry.clock <= known[0]):
                continue  # another connection's client: an echo
            if isinstance(owner, Peer) and peer is not None and owner is not peer \
                    and owner.author != peer.author:
                logger.warning("room %s: ignored the awareness state a connection of %r sent "
                               "for a client of %r", self.name, peer.author, owner.author)
                continue  # another user's client
            if known is not None and (
                entry.clock < known[0] or (entry.clock == known[0] and not entry.removed)
            ):
                if known[1] == "null" and not entry.removed and peer is not None:
                    outdated.append(AwarenessEntry(entry.client_id, known[0], "null"))
                continue
            if peer is not None and peer.user and not entry.removed:
                entry = AwarenessEntry(entry.client_id, entry.clock,
                                       shown_as(entry.state, peer.user))
            accepted.append(entry)
            self._awareness[entry.client_id] = (entry.clock, entry.state)
            self._removed_at.pop(entry.client_id, None)
            if isinstance(owner, Peer) and owner is not origin:
                owner.awareness_ids.discard(entry.client_id)  # taken over
            if entry.removed:
                self._owners.pop(entry.client_id, None)
                self._removed_at[entry.client_id] = now
            elif isinstance(origin, (Peer, str)):
                self._owners[entry.client_id] = origin
            if peer is not None:
                if entry.removed:
                    peer.awareness_ids.discard(entry.client_id)
                else:
                    peer.awareness_ids.add(entry.client_id)
        if accepted:
            update = encode_awareness_update(accepted)
            self._fan_out_awareness(update, origin)
            if peer is not None:
                peer.push(create_awareness_message(update))
        if outdated:
            origin.push(create_awareness_message(encode_awareness_update(outdated)))

    def query_awareness(self, peer: Peer) -> None:
        """Answer a peer's QUERY_AWARENESS with every present state: once per burst of
        queries, built when the peer's writer reaches it."""
        peer.push_coalesced("awareness", self.awareness_message)

    def _forget_removed(self, now: float) -> None:
        """Forget the clients removed more than :attr:`awareness_memory` seconds ago."""
        while self._removed_at:
            cid, removed_at = next(iter(self._removed_at.items()))
            if now - removed_at < self.awareness_memory:
                return
            del self._removed_at[cid]
            if self._awareness.get(cid, (0, ""))[1] == "null":
                del self._awareness[cid]

    def awareness_message(self) -> bytes | None:
        """An AWARENESS message with every present state, or ``None`` if there is none."""
        update = self._awareness_update(self._awareness)
        return None if update is None else create_awareness_message(update)

    def local_awareness_update(self) -> bytes | None:
        """The awareness update of the states owned by this process's peers, if any."""
        ids: set[int] = set()
        for peer in self.peers:
            ids |= peer.awareness_ids
        return self._awareness_update(ids)

    def _awareness_update(self, client_ids: Iterable[int]) -> bytes | None:
        entries = []
        for cid in client_ids:
            clock, state = self._awareness.get(cid, (0, "null"))
            if state != "null":
                entries.append(AwarenessEntry(cid, clock, state))
        return encode_awareness_update(entries) if entries else None

    def forget_remote_awareness(self, origin: str) -> None:
        """Remove the states announced through another process that went away."""
        ids = {cid for cid, owner in self._owners.items() if owner == origin}
        gone = self._remove_awareness(ids)
        if gone:
            self._fan_out_awareness(encode_awareness_update(gone), origin=REMOTE)

    def _remove_awareness(self, client_ids: set[int]) -> list[AwarenessEntry]:
        gone = []
        for cid in client_ids:
            clock, state = self._awareness.get(cid, (0, "null"))
            self._owners.pop(cid, None)
            if state != "null":
                self._awareness[cid] = (clock + 1, "null")
                self._removed_at.pop(cid, None)
                self._removed_at[cid] = time.monotonic()
                gone.append(AwarenessEntry(cid, clock + 1, "null"))
        return gone

    def _fan_out_awareness(self, payload: bytes, origin: Any) -> None:
        frame = create_awareness_message(payload)
        for peer in self.peers:
            if peer is not origin:
                peer.push(frame)
        if self.relay is not None and isinstance(origin, Peer):
            self.relay.publish_awareness(payload)


RoomFactory = Callable[[], Awaitable[Room]]


class RoomRegistry:
    """The rooms of one process (one event loop): loads each room once, unloads idle ones."""

    def __init__(self, channel_layer: Any = None, *, cross_process: bool | None = None,
                 unload_delay: float = 60.0, heartbeat: float = 5.0) -> None:
        self.channel_layer = channel_layer
        if cross_process is None:
            cross_process = channel_layer is not None and not _is_in_memory(channel_layer)
        #: Whether changes are published to the room in other processes.
        self.cross_process = cross_process
        self.unload_delay = unload_delay
        self.heartbeat = heartbeat
        self.rooms: dict[str, Room] = {}
        #: Which rooms this process owns, in a worker of ``serve --workers N`` (set by the
        #: worker when told; ``None``: every room).
        self.owners: Owners | None = None
        self._holders: dict[str, int] = {}
        self._loading: dict[str, asyncio.Future[None]] = {}
        self._unloading: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def owns(self, name: str) -> bool:
        """Whether the room ``name`` belongs in this process (see :attr:`owners`)."""
        return self.owners is None or self.owners.owns(name)

    async def acquire(self, name: str, factory: RoomFactory) -> Room:
        """Return the live room ``name``, loading it through ``factory`` if needed.

        Concurrent callers for the same room wait for one load; a room being unloaded is
        unloaded completely before it is loaded again. Pair every call with :meth:`release`.
        """
        while True:
            if name in self._unloading:
                await asyncio.shield(self._unloading[name])
                continue
            room = self.rooms.get(name)
            if room is not None:
                self._hold(name)
                return room
            if name in self._loading:
                await asyncio.shield(self._loading[name])
                continue
            loading = asyncio.get_running_loop().create_future()
            self._loading[name] = loading
            try:
                room = await factory()
                if self.channel_layer is not None:
                    room.relay = RoomRelay(room, self.channel_layer, publish=self.cross_process,
                                           heartbeat=self.heartbeat)
                    await room.relay.start()
                try:
                    await room.on_load()
                except BaseException:
                    if room.relay is not None:
                        await room.relay.stop()
                    raise
                self.rooms[name] = room
                metrics.ROOMS.inc()
            finally:
                del self._loading[name]
                loading.set_result(None)
            self._hold(name)
            _send(room_loaded, room)
            return room

    def release(self, room: Room) -> None:
        """Give back a room from :meth:`acquire`; the last release starts the idle delay."""
        name = room.name
        self._holders[name] -= 1
        if self._holders[name] == 0:
            loop = asyncio.get_running_loop()
            self._timers[name] = loop.call_later(self.unload_delay, self._start_unload, name)

    def _hold(self, name: str) -> None:
        self._holders[name] = self._holders.get(name, 0) + 1
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _start_unload(self, name: str) -> None:
        self._timers.pop(name, None)
        if self._holders.get(name) or name not in self.rooms:
            return
        task = asyncio.get_running_loop().create_task(self._unload_if_ready(name))
        self._unloading[name] = task

    async def _unload_if_ready(self, name: str) -> None:
        room = self.rooms[name]
        try:
            ready = await room.can_unload()
        except Exception:
            logger.exception("room %s: error while asking whether it may unload", name)
            ready = False
        if ready:
            await self._unload(name)
            return
        del self._unloading[name]  # a joiner waiting for the unload finds the room loaded
        if not self._holders.get(name) and name not in self._timers:
            loop = asyncio.get_running_loop()
            self._timers[name] = loop.call_later(self.unload_delay, self._start_unload, name)

    async def _unload(self, name: str) -> None:
        room = self.rooms.pop(name)
        metrics.ROOMS.dec()
        self._holders.pop(name, None)
        try:
            # on_unload stores what is pending before the relay's goodbye says what is stored
            await room.on_unload()
        except Exception:
            logger.exception("room %s: error while unloading", name)
        try:
            if room.relay is not None:
                await room.relay.stop()
        except Exception:
            logger.exception("room %s: error while leaving the relay", name)
        finally:
            del self._unloading[name]
            logger.info("room %s unloaded", name)
            _send(room_unloaded, room)

    async def close(self) -> None:
        """Unload every room now (at shutdown).

        The unloads run in a context of their own: a shutdown starts from a signal, in
        whatever context was current when it arrived, possibly in the middle of a database
        call, after which asgiref refuses every further call made in that context ("would
        deadlock") and no room could save.
        """
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        loop = asyncio.get_running_loop()
        for name in list(self.rooms):
            task = contextvars.Context().run(loop.create_task, self._unload(name))
            self._unloading[name] = task
            await task


def _send(signal: Any, room: Room) -> None:
    for receiver, result in signal.send_robust(sender=type(room), room=room):
        if isinstance(result, Exception):
            logger.error("room %s: %s failed: %r", room.name, receiver, result)


def _is_in_memory(layer: Any) -> bool:
    from channels.layers import InMemoryChannelLayer

    return isinstance(layer, InMemoryChannelLayer)


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RoomRegistry] = (
    weakref.WeakKeyDictionary()
)


async def close_all_rooms() -> None:
    """Unload every room of the running event loop (at shutdown): their ``on_unload`` hooks
    write what is pending."""
    registry = _registries.get(asyncio.get_running_loop())
    if registry is not None:
        await registry.close()


def find_room(name: str) -> Room | None:
    """The room ``name`` if it is loaded in this process (on the running event loop)."""
    registry = _registries.get(asyncio.get_running_loop())
    return None if registry is None else registry.rooms.get(name)


def rooms_named(name: str) -> list[Room]:
    """The rooms ``name`` loaded in this process on any event loop (for code outside the
    rooms' loop, such as the admin's pages, which reads them and changes nothing)."""
    found = (registry.rooms.get(name) for registry in list(_registries.values()))
    return [room for room in found if room is not None]


def loaded_rooms() -> list[Room]:
    """The rooms loaded in this process (on the running event loop)."""
    registry = _registries.get(asyncio.get_running_loop())
    return [] if registry is None else list(registry.rooms.values())


def get_registry(channel_layer: Any = None) -> RoomRegistry:
    """The registry of the running event loop, created on first use from Django settings."""
    loop = asyncio.get_running_loop()
    registry = _registries.get(loop)
    if registry is None:
        from jupyter_ydjango.conf import get_setting

        registry = RoomRegistry(
            get_relay_layer(channel_layer),
            unload_delay=get_setting("YDJANGO_ROOM_UNLOAD_DELAY"),
            heartbeat=get_setting("YDJANGO_RELAY_HEARTBEAT"),
        )
        _registries[loop] = registry
    return registry
