"""What one connection may make a room hold or do (``jupyter_ydjango.rooms.budgets``), on real
rooms and peers in one event loop: frames waiting to be sent, answers to repeated requests,
awareness states and who may change them, and what the room remembers of removed clients."""

from __future__ import annotations

import asyncio
import json
import time

import pycrdt
import pytest

from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.messages import (
    AwarenessEntry,
    TooManyMessages,
    YMessageType,
    count_messages,
    create_query_awareness_message,
    decode_awareness_update,
    decode_messages,
    encode_awareness_update,
)
from jupyter_ydjango.rooms.budgets import Budgets, OverBudget
from jupyter_ydjango.rooms.room import ANSWER_BURST, ANSWER_RATE, FRAME_OVERHEAD, Peer, Room


class Client:
    """A peer of a room whose socket is writable only while :attr:`reading` is set."""

    def __init__(self, room: Room, author: str = "", reading: bool = True) -> None:
        self.frames: list[bytes] = []
        self.closed: list[int] = []
        self.reading = asyncio.Event()
        if reading:
            self.reading.set()
        self.peer: Peer = room.join(self._send, self._close, author)

    async def _send(self, frame: bytes) -> None:
        await self.reading.wait()
        self.frames.append(frame)

    async def _close(self, code: int) -> None:
        self.closed.append(code)

    def messages(self, kind: YMessageType) -> list:
        return [m for frame in self.frames for m in decode_messages(frame) if m.type is kind]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def state(client_id: int, clock: int, text: str) -> bytes:
    return encode_awareness_update([AwarenessEntry(client_id, clock, text)])


def known_state(room: Room, client_id: int) -> str | None:
    for text in room.awareness_states():
        if json.loads(text).get("id") == client_id:
            return text
    return None


def edit(room: Room, text: str) -> None:
    ytext = room.doc.get("t", type=pycrdt.Text)
    with room.doc.transaction():
        ytext += text


# --- bytes waiting -------------------------------------------------------------------------


async def test_a_peer_that_does_not_read_is_closed_past_its_send_budget() -> None:
    room = Room("budget", pycrdt.Doc(), Budgets(send_bytes=1_000_000))
    reader = Client(room)
    stuck = Client(room, reading=False)
    room.sync_step1(reader.peer, b"\x00")
    room.sync_step1(stuck.peer, b"\x00")
    await settle()
    chunk = "x" * 100_000
    for _ in range(30):  # 3 MB flow through the room
        edit(room, chunk)
        ytext = room.doc.get("t", type=pycrdt.Text)
        del ytext[0:len(chunk)]  # the document stays small; its updates do not
        await settle()
    assert stuck.closed == [close_codes.SLOW_PEER]
    assert stuck.peer.queued_bytes <= 1_000_000
    assert reader.closed == []  # the others go on
    assert sum(map(len, reader.frames)) > 3_000_000


async def test_one_frame_larger_than_the_budget_reaches_a_peer_with_nothing_waiting() -> None:
    room = Room("big", pycrdt.Doc(), Budgets(send_bytes=10_000))
    edit(room, "y" * 50_000)  # the joiner's whole document is five times the budget
    joiner = Client(room)
    room.sync_step1(joiner.peer, b"\x00")
    await settle()
    assert joiner.closed == []
    doc = pycrdt.Doc()
    for message in joiner.messages(YMessageType.SYNC):
        if message.sync_type == 1:  # the step 2 (the step 1 is the room's own question)
            doc.apply_update(message.payload)
    assert len(str(doc.get("t", type=pycrdt.Text))) == 50_000


def test_queued_bytes_count_every_frame_with_its_overhead() -> None:
    async def scenario() -> None:
        room = Room("count", pycrdt.Doc(), Budgets(send_bytes=10 * (FRAME_OVERHEAD + 1)))
        stuck = Client(room, reading=False)
        await settle()  # the writer holds the join frames
        before = stuck.peer.queued_bytes
        for _ in range(20):
            stuck.peer.push(b"z")
        assert stuck.peer.queued_bytes <= 10 * (FRAME_OVERHEAD + 1)
        assert stuck.peer.queued_bytes >= before
        await settle()
        assert stuck.closed == [close_codes.SLOW_PEER]

    asyncio.run(scenario())


# --- answers to repeated requests ----------------------------------------------------------


async def test_a_burst_of_step_1s_is_answered_with_one_diff_each_time_the_peer_reads() -> None:
    room = Room("step1", pycrdt.Doc(), Budgets())
    edit(room, "document")
    diffs: list[bytes | None] = []
    diff = room.engine.diff
    room.engine.diff = lambda sv=None: diffs.append(sv) or diff(sv)
    client = Client(room, reading=False)
    stale = pycrdt.Doc(client_id=7)
    stale.get("t", type=pycrdt.Text).insert(0, "?")
    for _ in range(10_000):
        room.sync_step1(client.peer, stale.get_state())
    await settle()
    assert len(diffs) <= 1  # the writer is stuck on the frames before it
    client.reading.set()
    await settle()
    step2s = [m for m in client.messages(YMessageType.SYNC) if m.sync_type == 1]
    assert len(step2s) == 1 and len(diffs) == 1


async def test_a_peer_that_keeps_asking_waits_for_its_answers() -> None:
    """Asked one at a time, as a peer that reads them: the first ANSWER_BURST answers come at
    once, then ANSWER_RATE a second, each for every request that came meanwhile."""
    room = Room("rate", pycrdt.Doc(), Budgets())
    edit(room, "document")
    diffs: list[bytes | None] = []
    diff = room.engine.diff
    room.engine.diff = lambda sv=None: diffs.append(sv) or diff(sv)
    client = Client(room)
    start = time.monotonic()
    for _ in range(3 * ANSWER_BURST):
        room.sync_step1(client.peer, b"\x01\x09\x00")  # client 9 at clock 0: a real diff
        await settle()
    elapsed = time.monotonic() - start
    assert ANSWER_BURST <= len(diffs) <= ANSWER_BURST + 1 + elapsed * ANSWER_RATE
    await asyncio.sleep(1 / ANSWER_RATE + 0.3)  # the requests still waiting: one answer
    elapsed = time.monotonic() - start
    assert len(diffs) <= ANSWER_BURST + 2 + elapsed * ANSWER_RATE
    assert len(diffs) < 2 * ANSWER_BURST
    step2s = [m for m in client.messages(YMessageType.SYNC) if m.sync_type == 1]
    assert len(step2s) == len(diffs)


async def test_queries_for_awareness_are_answered_once_per_burst() -> None:
    room = Room("query", pycrdt.Doc(), Budgets())
    other = Client(room)
    room.apply_awareness(state(5, 1, '{"id":5}'), other.peer)
    client = Client(room, reading=False)  # it is sent the states when it joins
    built: list[int] = []
    message = room.awareness_message
    room.awareness_message = lambda: built.append(1) or message()
    for _ in range(100_000):
        room.query_awareness(client.peer)
    client.reading.set()
    await settle()
    assert len(built) == 1
    assert len(client.messages(YMessageType.AWARENESS)) == 2  # at join, and the answer


# --- awareness -----------------------------------------------------------------------------


async def test_an_awareness_state_past_the_limit_closes_before_anything_is_kept() -> None:
    room = Room("big-state", pycrdt.Doc(), Budgets(awareness_state=1000))
    client = Client(room)
    huge = json.dumps({"id": 1, "pad": "p" * 2000})
    with pytest.raises(OverBudget) as raised:
        room.apply_awareness(state(1, 1, huge), client.peer)
    assert raised.value.code == close_codes.TOO_BIG
    assert room.awareness_states() == [] and client.peer.awareness_ids == set()
    room.apply_awareness(state(1, 1, '{"id":1}'), client.peer)  # a small one is fine
    assert known_state(room, 1) == '{"id":1}'


def test_a_huge_state_is_refused_before_it_is_parsed() -> None:
    not_json = b"\x01\x01\x01" + b"\xff\xff\x7f" + b"{" * 10  # claims 2 MB, is not JSON at all
    with pytest.raises(Exception, match="bytes > 1000"):
        decode_awareness_update(not_json, max_state=1000)


async def test_a_connection_may_announce_a_few_client_ids_only() -> None:
    room = Room("ids", pycrdt.Doc(), Budgets(awareness_clients=3))
    client = Client(room)
    for cid in (1, 2, 3):
        room.apply_awareness(state(cid, 1, f'{{"id":{cid}}}'), client.peer)
    with pytest.raises(OverBudget) as raised:
        room.apply_awareness(state(4, 1, '{"id":4}'), client.peer)
    assert raised.value.code == close_codes.TOO_MANY
    assert known_state(room, 4) is None
    room.apply_awareness(state(3, 2, '{"id":3,"again":1}'), client.peer)  # its own: fine


async def test_another_user_cannot_change_or_remove_a_users_state() -> None:
    room = Room("impersonation", pycrdt.Doc(), Budgets())
    alice = Client(room, "alice")
    mallory = Client(room, "mallory")
    watcher = Client(room, "carol")
    room.apply_awareness(state(11, 3, '{"id":11,"name":"Alice"}'), alice.peer)
    await settle()
    seen = len(watcher.messages(YMessageType.AWARENESS))
    room.apply_awareness(state(11, 99, '{"id":11,"name":"Mallory"}'), mallory.peer)
    room.apply_awareness(state(11, 100, "null"), mallory.peer)
    await settle()
    assert known_state(room, 11) == '{"id":11,"name":"Alice"}'
    assert len(watcher.messages(YMessageType.AWARENESS)) == seen  # nothing reached anyone
    room.leave(mallory.peer)
    assert known_state(room, 11) == '{"id":11,"name":"Alice"}'
    # the same user's new connection (her reconnect) takes it over
    again = Client(room, "alice")
    room.apply_awareness(state(11, 4, '{"id":11,"name":"Alice","tab":2}'), again.peer)
    assert known_state(room, 11) == '{"id":11,"name":"Alice","tab":2}'


async def test_the_room_forgets_removed_clients_after_a_while() -> None:
    room = Room("forget", pycrdt.Doc(), Budgets())
    room.awareness_memory = 0.2
    for cid in range(50):
        client = Client(room, f"user{cid}")
        room.apply_awareness(state(cid, 1, f'{{"id":{cid}}}'), client.peer)
        room.leave(client.peer)
    assert len(room._awareness) == 50  # the removals are remembered for a while
    await asyncio.sleep(0.3)
    late = Client(room)
    room.apply_awareness(state(1000, 1, '{"id":1000}'), late.peer)
    assert set(room._awareness) == {1000}


# --- frames ---------------------------------------------------------------------------------


def test_checking_a_frame_stops_at_the_message_limit() -> None:
    frame = create_query_awareness_message() * 1_000_000  # 1 MB, a million messages
    with pytest.raises(TooManyMessages):
        count_messages(frame, 64)
    # it stopped there: the malformed end of this one is never reached
    with pytest.raises(TooManyMessages):
        count_messages(create_query_awareness_message() * 65 + b"\xff", 64)
    assert count_messages(create_query_awareness_message() * 64, 64) == 64
