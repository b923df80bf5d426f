"""Rooms, the registry and the relay, in one process (several registries = several processes)."""

from __future__ import annotations

import asyncio
import socket
import time

import pycrdt
import pytest
from channels.layers import InMemoryChannelLayer

from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.messages import AwarenessEntry, encode_awareness_update
from jupyter_ydjango.rooms.budgets import Budgets
from jupyter_ydjango.rooms.relay import SILENCE
from jupyter_ydjango.rooms.room import FRAME_OVERHEAD, Room, RoomRegistry


def edit(room: Room, text: str) -> None:
    """Append to the room's text as server-side code would (origin None)."""
    ytext = room.doc.get("t", type=pycrdt.Text)
    with room.doc.transaction():
        ytext += text


def text_of(room: Room) -> str:
    return text_of_doc(room.doc)


def text_of_doc(doc: pycrdt.Doc) -> str:
    return str(doc.get("t", type=pycrdt.Text))


async def eventually(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def factory(name: str, calls: list[str] | None = None, delay: float = 0.0):
    async def make() -> Room:
        if calls is not None:
            calls.append(name)
        await asyncio.sleep(delay)
        return Room(name, pycrdt.Doc())

    return make


# --- registry ------------------------------------------------------------------------


async def test_concurrent_acquire_makes_one_doc():
    registry = RoomRegistry(unload_delay=10)
    calls: list[str] = []
    rooms = await asyncio.gather(*(registry.acquire("r", factory("r", calls, 0.05))
                                   for _ in range(8)))
    assert calls == ["r"]
    assert all(room is rooms[0] for room in rooms)


async def test_idle_room_unloaded_after_delay_and_kept_on_reconnect():
    unloaded: list[str] = []

    class Tracked(Room):
        async def on_unload(self) -> None:
            unloaded.append(self.name)

    async def make() -> Room:
        return Tracked("r", pycrdt.Doc())

    registry = RoomRegistry(unload_delay=0.2)
    room = await registry.acquire("r", make)
    edit(room, "kept")
    registry.release(room)
    again = await registry.acquire("r", make)  # a reconnect within the delay
    assert again is room and text_of(again) == "kept"
    await asyncio.sleep(0.3)  # > the delay: the reconnect cancelled the unload
    assert unloaded == [] and "r" in registry.rooms
    registry.release(again)
    await eventually(lambda: unloaded == ["r"])
    assert "r" not in registry.rooms
    fresh = await registry.acquire("r", make)
    assert fresh is not room and text_of(fresh) == ""


async def test_load_waits_for_an_unload_in_progress():
    order: list[str] = []

    class Slow(Room):
        async def on_load(self) -> None:
            order.append("load")

        async def on_unload(self) -> None:
            order.append("unload start")
            await asyncio.sleep(0.2)
            order.append("unload end")

    async def make() -> Room:
        return Slow("r", pycrdt.Doc())

    registry = RoomRegistry(unload_delay=0)
    registry.release(await registry.acquire("r", make))
    await eventually(lambda: "unload start" in order)
    await registry.acquire("r", make)
    assert order == ["load", "unload start", "unload end", "load"]


# --- relay across "processes" --------------------------------------------------------


class LossyLayer(InMemoryChannelLayer):
    """An in-memory layer that loses the relay updates chosen by ``drop``, silently, as
    channels-redis does over capacity."""

    def __init__(self) -> None:
        super().__init__()
        self.sent_updates = 0
        self.drop: set[int] = set()
        self.dropped: list[dict] = []

    async def group_send(self, group: str, message: dict) -> None:
        if message.get("type") == "relay.update":
            self.sent_updates += 1
            if self.sent_updates in self.drop:
                self.dropped.append(message)
                return
        await super().group_send(group, message)


async def two_processes(layer, heartbeat: float = 0.2):
    a = RoomRegistry(layer, cross_process=True, heartbeat=heartbeat, unload_delay=10)
    b = RoomRegistry(layer, cross_process=True, heartbeat=heartbeat, unload_delay=10)
    room_a = await a.acquire("shared", factory("shared"))
    room_b = await b.acquire("shared", factory("shared"))
    # The hello exchange: each relay knows the other before the test edits.
    await eventually(lambda: room_a.relay.channel in room_b.relay.peers
                     and room_b.relay.channel in room_a.relay.peers)
    return (a, room_a), (b, room_b)


async def close_all(*registries: RoomRegistry) -> None:
    for registry in registries:
        await registry.close()


async def test_relay_applies_remote_changes():
    layer = InMemoryChannelLayer()
    (a, room_a), (b, room_b) = await two_processes(layer)
    for ch in "abc":
        edit(room_a, ch)
    edit(room_b, "x")
    await eventually(lambda: text_of(room_a) == text_of(room_b) and len(text_of(room_a)) == 4)
    assert room_a.relay.resyncs == 0 and room_b.relay.resyncs == 0
    await close_all(a, b)


async def test_late_process_gets_the_room_state_on_hello():
    layer = InMemoryChannelLayer()
    a = RoomRegistry(layer, cross_process=True, heartbeat=10, unload_delay=10)
    room_a = await a.acquire("shared", factory("shared"))
    edit(room_a, "written before the second process loaded the room")
    b = RoomRegistry(layer, cross_process=True, heartbeat=10, unload_delay=10)
    room_b = await b.acquire("shared", factory("shared"))
    await eventually(lambda: text_of(room_b) == text_of(room_a))
    await close_all(a, b)


async def test_lost_update_in_the_middle_is_repaired_by_resync():
    layer = LossyLayer()
    (a, room_a), (b, room_b) = await two_processes(layer, heartbeat=30)
    layer.drop = {2}
    for ch in "abcde":
        edit(room_a, ch)
    await eventually(lambda: text_of(room_b) == "abcde")
    assert room_b.relay.resyncs >= 1
    await close_all(a, b)


async def test_lost_last_update_is_repaired_after_a_heartbeat():
    layer = LossyLayer()
    (a, room_a), (b, room_b) = await two_processes(layer, heartbeat=0.2)
    layer.drop = {3}
    for ch in "ab":
        edit(room_a, ch)
    await eventually(lambda: text_of(room_b) == "ab")
    doc = pycrdt.Doc()
    doc.apply_update(room_b.doc.get_update())
    edit(room_a, "c")
    await eventually(lambda: layer.dropped)
    # the loss is real: the last update, "c", and nothing else would bring it
    (lost,) = layer.dropped
    doc.apply_update(lost["update"])
    assert text_of_doc(doc) == "abc"
    await eventually(lambda: text_of(room_b) == "abc", timeout=20)
    assert room_b.relay.resyncs >= 1
    await close_all(a, b)


def silence(room: Room) -> None:
    """The room's process dies: its relay stops at once, without a goodbye."""
    for task in room.relay._tasks:
        task.cancel()


def announce(room: Room, client_id: int, state: str) -> None:
    """A client of ``room`` announces its awareness state."""
    peer = room.join(_ignore_frame, _ignore_close)
    room.apply_awareness(encode_awareness_update([AwarenessEntry(client_id, 1, state)]), peer)


async def _ignore_frame(frame: bytes) -> None:
    pass


async def _ignore_close(code: int) -> None:
    pass


def awareness_state(room: Room, client_id: int) -> str:
    return room._awareness.get(client_id, (0, "null"))[1]


async def test_a_silent_process_clients_awareness_is_removed_after_a_missed_heartbeat():
    """Three processes; A's client and C's client announce themselves. A dies without a
    goodbye: B removes A's client's state once A missed a heartbeat (within SILENCE heartbeats
    and one check after A's last message), and keeps C's."""
    heartbeat = 0.5
    layer = InMemoryChannelLayer()
    registries = [RoomRegistry(layer, cross_process=True, heartbeat=heartbeat, unload_delay=10)
                  for _ in range(3)]
    room_a, room_b, room_c = [await r.acquire("shared", factory("shared")) for r in registries]
    announce(room_a, 1, '{"name":"a"}')
    announce(room_c, 3, '{"name":"c"}')
    await eventually(lambda: awareness_state(room_b, 1) != "null"
                     and awareness_state(room_b, 3) != "null")
    silence(room_a)
    last_heard = room_b.relay.heard[room_a.relay.channel]
    await eventually(lambda: awareness_state(room_b, 1) == "null")
    assert time.monotonic() - last_heard < (SILENCE + 1) * heartbeat
    assert room_a.relay.channel not in room_b.relay.peers
    forgotten = time.monotonic()
    c = room_c.relay.channel
    # C keeps beating: long after A was forgotten, it is not taken for gone
    await eventually(lambda: room_b.relay.heard[c] > forgotten + SILENCE * heartbeat,
                     timeout=10)
    assert awareness_state(room_b, 3) == '{"name":"c"}'
    await close_all(*registries[1:])


class Storing(Room):
    """A room that stores changes in a list; ``confirming`` False: its store is down."""

    def __init__(self, name: str, doc: pycrdt.Doc) -> None:
        super().__init__(name, doc)
        self.confirming = True
        self.remote: list[bytes] = []

    def stored_seq(self) -> int | None:
        return self.relay.seq if self.confirming else 0

    def store_remote_updates(self, updates: list[bytes]) -> None:
        self.remote += updates


def storing_factory(name: str):
    async def make() -> Room:
        return Storing(name, pycrdt.Doc())

    return make


def replayed(updates: list[bytes]) -> str:
    doc = pycrdt.Doc()
    for update in updates:
        doc.apply_update(update)
    return text_of_doc(doc)


async def test_changes_a_process_did_not_store_are_stored_by_the_others_when_it_dies():
    """A's store is down: B, which received A's changes, keeps them while A lives (A may still
    store them) and stores them itself once A fell silent."""
    layer = InMemoryChannelLayer()
    a, b = (RoomRegistry(layer, cross_process=True, heartbeat=0.2, unload_delay=10)
            for _ in range(2))
    room_a = await a.acquire("shared", storing_factory("shared"))
    room_b = await b.acquire("shared", storing_factory("shared"))
    room_a.confirming = False
    for ch in "abc":
        edit(room_a, ch)
    await eventually(lambda: text_of(room_b) == "abc")
    received = time.monotonic()
    # A's heartbeat comes and confirms nothing: B keeps the changes, stores none yet
    await eventually(lambda: room_b.relay.heard[room_a.relay.channel] > received)
    assert room_b.remote == []
    silence(room_a)
    await eventually(lambda: room_b.remote)
    assert replayed(room_b.remote) == "abc"
    await close_all(b)


async def test_changes_a_process_stored_are_not_stored_again():
    """A confirms what it stored: when it dies, or leaves, B stores none of its changes."""
    layer = InMemoryChannelLayer()
    a, b, c = (RoomRegistry(layer, cross_process=True, heartbeat=0.2, unload_delay=10)
               for _ in range(3))
    room_a = await a.acquire("shared", storing_factory("shared"))
    room_b = await b.acquire("shared", storing_factory("shared"))
    room_c = await c.acquire("shared", storing_factory("shared"))
    for ch in "abc":
        edit(room_a, ch)
        edit(room_c, ch.upper())
    await eventually(lambda: len(text_of(room_b)) == 6)
    await eventually(lambda: not any(room_b.relay._unstored.values()))
    silence(room_a)
    await eventually(lambda: room_a.relay.channel not in room_b.relay.heard)
    await close_all(c)  # a goodbye
    await eventually(lambda: room_c.relay.channel not in room_b.relay.peers)
    assert room_b.remote == []
    await close_all(b)


async def test_server_side_pushes_are_stored_by_every_process():
    """An update pushed by server-side code reaches each process once, and each stores it:
    no process received it from a client, so no other would."""
    from jupyter_ydjango.consumer import asend_doc_update

    layer = InMemoryChannelLayer()
    a, b = (RoomRegistry(layer, cross_process=True, heartbeat=0.2, unload_delay=10)
            for _ in range(2))
    rooms = [await r.acquire("shared", storing_factory("shared")) for r in (a, b)]
    doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, "pushed")
    await asend_doc_update("shared", doc.get_update(), channel_layer=layer)
    await eventually(lambda: all(room.remote for room in rooms))
    assert [replayed(room.remote) for room in rooms] == ["pushed", "pushed"]
    await close_all(a, b)


def redis_available() -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


REDIS_HOSTS = [{"address": "redis://127.0.0.1:6379/0", "socket_timeout": 30}]


@pytest.mark.redis
async def test_relay_on_real_redis_repairs_losses():
    if not redis_available():
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    from channels_redis.core import RedisChannelLayer

    class LossyRedis(RedisChannelLayer):
        drop_every = 4
        count = 0

        async def group_send(self, group, message):
            if message.get("type") == "relay.update":
                LossyRedis.count += 1
                if LossyRedis.count % self.drop_every == 0:
                    return
            await super().group_send(group, message)

    prefix = f"ydjtest{time.monotonic_ns()}"
    # Two layer objects = two processes' connections to the same Redis.
    layer_a = LossyRedis(hosts=REDIS_HOSTS, prefix=prefix)
    layer_b = LossyRedis(hosts=REDIS_HOSTS, prefix=prefix)
    a = RoomRegistry(layer_a, cross_process=True, heartbeat=0.3, unload_delay=10)
    b = RoomRegistry(layer_b, cross_process=True, heartbeat=0.3, unload_delay=10)
    room_a = await a.acquire("shared", factory("shared"))
    room_b = await b.acquire("shared", factory("shared"))
    for i in range(40):
        edit(room_a if i % 2 else room_b, str(i % 10))
    await eventually(lambda: text_of(room_a) == text_of(room_b) and len(text_of(room_a)) == 40,
                     timeout=10)
    assert room_a.relay.resyncs + room_b.relay.resyncs >= 1
    await close_all(a, b)
    await layer_a.flush()
    await layer_b.close_pools()


# --- peers -----------------------------------------------------------------------------


async def test_a_peer_that_stops_reading_is_closed_not_buffered_forever():
    budget = 5 * (FRAME_OVERHEAD + 40)  # about five small updates
    room = Room("slow", pycrdt.Doc(), Budgets(send_bytes=budget))
    stuck = asyncio.Event()
    closed: list[int] = []

    async def send(frame: bytes) -> None:
        await stuck.wait()  # a client that never reads: the socket buffer is full

    async def close(code: int) -> None:
        closed.append(code)

    peer = room.join(send, close)
    room.sync_step1(peer, pycrdt.Doc().get_state())
    for ch in "abcdefgh":
        edit(room, ch)
    await eventually(lambda: closed == [close_codes.SLOW_PEER])
    peer.push(b"more")  # nothing more is queued once the peer is being closed
    assert peer.queued_bytes <= budget


def join_empty(room: Room) -> list[bytes]:
    """A peer holding nothing joins ``room`` and asks for the document; the frames it gets."""
    got: list[bytes] = []

    async def send(frame: bytes) -> None:
        got.append(frame)

    async def close(code: int) -> None:
        pass

    room.sync_step1(room.join(send, close), pycrdt.Doc().get_state())
    return got


async def test_joiners_holding_nothing_share_one_frame_of_the_current_document():
    room = Room("joiners", pycrdt.Doc())
    edit(room, "a")
    first, second = join_empty(room), join_empty(room)
    await eventually(lambda: len(first) == 2 and len(second) == 2)  # SYNC step 1, step 2
    assert first[1] is second[1]  # one shared step 2
    edit(room, "b")  # a new version of the document: the next joiner gets it
    third = join_empty(room)
    await eventually(lambda: len(third) == 2)
    joiner = pycrdt.Doc()
    pycrdt.handle_sync_message(third[1][1:], joiner)
    assert str(joiner.get("t", type=pycrdt.Text)) == "ab"


async def test_a_document_known_whole_is_sent_to_joiners_without_encoding_it():
    room = Room("imported", pycrdt.Doc())
    source = pycrdt.Doc(client_id=0)
    source.get("t", type=pycrdt.Text).insert(0, "imported")
    room.apply_update(source.get_update())
    room.whole_document_is(source.get_update())
    encoded: list[bytes | None] = []
    diff = room.engine.diff
    room.engine.diff = lambda state_vector=None: encoded.append(state_vector) or diff(state_vector)

    first = join_empty(room)
    await eventually(lambda: len(first) == 2)
    assert encoded == []
    joiner = pycrdt.Doc()
    pycrdt.handle_sync_message(first[1][1:], joiner)
    assert text_of_doc(joiner) == "imported"
    edit(room, "!")  # changed: the next joiner gets the document as it is now
    second = join_empty(room)
    await eventually(lambda: len(second) == 2)
    assert encoded == [None]
    joiner = pycrdt.Doc()
    pycrdt.handle_sync_message(second[1][1:], joiner)
    assert text_of_doc(joiner) == "imported!"


# --- engines ---------------------------------------------------------------------------


def client_update(client_id: int, text: str) -> bytes:
    """An update from a fresh client with ``client_id`` appending ``text`` to ``t``."""
    doc = pycrdt.Doc(client_id=client_id)
    doc.get("t", type=pycrdt.Text).insert(0, text)
    return doc.get_update()


def test_room_keeps_wide_client_ids_as_sent():
    from jupyter_ydjango.protocol.engines import decode_state_vector

    wide = (1 << 53) - 3  # pycrdt draws client ids this wide
    room = Room("wide", pycrdt.Doc())
    room.apply_update(client_update(wide, "from pycrdt"))
    room.apply_update(client_update(0xFFFF_FFF0, " and yjs"))
    assert decode_state_vector(room.state_vector()) == {wide: 11, 0xFFFF_FFF0: 8}
    peer = pycrdt.Doc()
    peer.apply_update(room.diff())
    assert decode_state_vector(peer.get_state()) == decode_state_vector(room.state_vector())


def test_ypy_room_refuses_client_ids_it_cannot_hold():
    y_py = pytest.importorskip(
        "y_py", reason="y-py (the [ypy] extra) installs only on Python < 3.13")
    from jupyter_ydjango.protocol.engines import UnsupportedClientId, decode_state_vector

    changes: list[bytes] = []

    class Observed(Room):
        def on_change(self, update: bytes, origin) -> None:
            changes.append(update)

    room = Observed("ypy", y_py.YDoc())
    room.apply_update(client_update(0xFFFF_FFF0, "yjs"))
    assert str(room.doc.get_text("t")) == "yjs" and len(changes) == 1
    before = room.state_vector()
    with pytest.raises(UnsupportedClientId, match="wider than 32 bits"):
        room.apply_update(client_update(1 << 40, "pycrdt"))
    assert room.state_vector() == before and len(changes) == 1  # nothing applied
    assert decode_state_vector(before) == {0xFFFF_FFF0: 3}


def recording_peer(room: Room) -> tuple[object, list[bytes]]:
    """A peer of ``room`` and the frames it receives."""
    got: list[bytes] = []

    async def send(frame: bytes) -> None:
        got.append(frame)

    return room.join(send, _ignore_close), got


def awareness_from(room: Room, peer: object, client_id: int, clock: int, state: str) -> None:
    room.apply_awareness(encode_awareness_update([AwarenessEntry(client_id, clock, state)]),
                         peer)


async def test_echoes_never_take_over_or_remove_another_connections_client() -> None:
    """B echoes A's state, then removes it as y-protocols does for a remote state it heard
    nothing of for 30 s: neither reaches C, and A stays; A's own newer state and removal do.
    B leaving removes only what B announced."""
    room = Room("echoes", pycrdt.Doc())
    alice, _ = recording_peer(room)
    bob, _ = recording_peer(room)
    carol, carol_got = recording_peer(room)
    awareness_from(room, alice, 11, 3, '{"user":"alice"}')
    awareness_from(room, bob, 22, 1, '{"user":"bob"}')
    await asyncio.sleep(0)
    seen = len(carol_got)
    awareness_from(room, bob, 11, 3, '{"user":"alice"}')  # an echo
    awareness_from(room, bob, 11, 3, "null")  # y-protocols' timeout of a remote state
    awareness_from(room, bob, 11, 2, '{"user":"old"}')
    await asyncio.sleep(0)
    assert len(carol_got) == seen, "nothing of it was relayed"
    assert awareness_state(room, 11) == '{"user":"alice"}'
    room.leave(bob)
    assert awareness_state(room, 11) == '{"user":"alice"}'
    assert awareness_state(room, 22) == "null"
    awareness_from(room, alice, 11, 4, '{"user":"alice","current":"x"}')
    assert awareness_state(room, 11) == '{"user":"alice","current":"x"}'
    room.leave(alice)
    assert awareness_state(room, 11) == "null"
    room.leave(carol)


async def test_a_client_connected_again_takes_its_id_over_with_a_newer_state() -> None:
    """Alice's old connection is not seen closed yet when her new one announces her, with a
    newer clock: the new connection owns her id, and the old one closing later removes
    nothing."""
    room = Room("again", pycrdt.Doc())
    old, _ = recording_peer(room)
    awareness_from(room, old, 11, 3, '{"user":"alice"}')
    new, _ = recording_peer(room)
    awareness_from(room, new, 11, 4, '{"user":"alice"}')
    room.leave(old)
    assert awareness_state(room, 11) == '{"user":"alice"}'
    room.leave(new)
    assert awareness_state(room, 11) == "null"
