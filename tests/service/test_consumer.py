"""YjsConsumer against real daphne processes, real Yjs clients (node) and raw frames."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from daphne_servers import TEST_MAX_MESSAGE_SIZE, Server
from frame_client import RawClient
from websockets.exceptions import InvalidStatus

from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.messages import (
    AwarenessEntry,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_query_awareness_message,
    decode_awareness_update,
    encode_awareness_update,
    write_var_uint,
)

_rooms = itertools.count()


def room_name(label: str) -> str:
    """A room no other test uses."""
    return f"{label}-{next(_rooms)}-{random.randrange(1 << 30)}"


async def converge(clients, writes_per_client: int, expected_length: int) -> list[str]:
    """Every client writes concurrently at random places; all must end with the same text."""

    async def write(client, tag: str) -> None:
        for i in range(writes_per_client):
            length = len(await client.text())
            await client.insert(random.randrange(length + 1), f"{tag}{i % 10}")
            await asyncio.sleep(random.random() * 0.01)

    await asyncio.gather(*(write(c, chr(ord("A") + n)) for n, c in enumerate(clients)))
    texts = [await c.wait_text(length=expected_length, timeout=20) for c in clients]
    return texts


# --- convergence -----------------------------------------------------------------------


@pytest.mark.node
@pytest.mark.parametrize("count", [2, 10])
async def test_yjs_clients_converge_in_memory(embedded_server: Server, ydriver, count: int):
    room = room_name("converge")
    clients = [await ydriver.connect(embedded_server.ws_url, room) for _ in range(count)]
    texts = await converge(clients, writes_per_client=20, expected_length=count * 20 * 2)
    assert len(set(texts)) == 1
    for n in range(count):  # nothing lost: every client's every write is there
        assert texts[0].count(chr(ord("A") + n)) == 20
    # A client that joins afterwards receives the same document from the room.
    late = await ydriver.connect(embedded_server.ws_url, room)
    assert await late.text() == texts[0]


@pytest.mark.node
@pytest.mark.redis
@pytest.mark.parametrize("count", [2, 10])
async def test_yjs_clients_converge_across_two_processes(redis_servers, ydriver, count: int):
    room = room_name("redis")
    clients = [await ydriver.connect(redis_servers[n % 2].ws_url, room) for n in range(count)]
    texts = await converge(clients, writes_per_client=20, expected_length=count * 20 * 2)
    assert len(set(texts)) == 1
    for n in range(count):
        assert texts[0].count(chr(ord("A") + n)) == 20


@pytest.mark.redis
async def test_second_process_loads_room_from_the_first(redis_servers):
    room = room_name("late-process")
    writer = await RawClient.open(f"{redis_servers[0].ws_url}/{room}")
    await writer.handshake()
    await writer.edit("written in process one")
    await writer.barrier()  # the first process applied it
    reader = await RawClient.open(f"{redis_servers[1].ws_url}/{room}")
    await reader.handshake()
    # the second process gets the room's state from the first
    await reader.wait_for(lambda m: reader.text() == "written in process one", timeout=30)
    await writer.close()
    await reader.close()


# --- join cost -------------------------------------------------------------------------


def sync_payloads(frames, kind: YSyncMessageType) -> list[bytes]:
    return [m.payload for f in frames for m in f.messages
            if m.type is YMessageType.SYNC and m.sync_type is kind]


async def test_join_costs_one_full_document_send(embedded_server: Server):
    room = room_name("join")
    url = f"{embedded_server.ws_url}/{room}"
    writer = await RawClient.open(url)
    await writer.handshake()
    await writer.edit("x" * 100_000)
    document = writer.doc.get_update()
    bystanders = [await RawClient.open(url) for _ in range(20)]
    await asyncio.gather(*(b.handshake() for b in bystanders))
    assert all(b.text() == writer.text() for b in bystanders)
    others = [writer, *bystanders]
    marks = [await b.barrier() + 1 for b in others]  # what came before the join

    joiner = await RawClient.open(url)
    await joiner.handshake()
    ends = [await b.barrier() for b in others]  # what the join brought them has arrived
    answer = await joiner.barrier()

    assert joiner.text() == writer.text()
    full = [p for p in sync_payloads(joiner.frames[:answer], YSyncMessageType.SYNC_STEP2)
            if len(p) >= len(document) // 2]
    assert len(full) == 1  # the joiner gets the document once
    during = [f for b, mark, end in zip(others, marks, ends, strict=True)
              for f in b.frames[mark:end]]
    # Nobody else receives anything because of a join without edits or awareness.
    assert sum(len(f.data) for f in during) == 0
    for client in [writer, joiner, *bystanders]:
        await client.close()


async def test_updates_fan_out_once_and_not_to_the_sender(embedded_server: Server):
    room = room_name("fanout")
    url = f"{embedded_server.ws_url}/{room}"
    clients = [await RawClient.open(url) for _ in range(5)]
    await asyncio.gather(*(c.handshake() for c in clients))
    marks = [len(c.frames) for c in clients]
    update = await clients[0].edit("hello")
    ends = [await c.barrier() for c in clients]  # the sender's first: the edit is handled
    received = [sync_payloads(c.frames[m:end], YSyncMessageType.SYNC_UPDATE)
                for c, m, end in zip(clients, marks, ends, strict=True)]
    assert received[0] == []
    assert all(r == [update] for r in received[1:])
    for client in clients:
        await client.close()


async def test_no_updates_before_the_handshake_starts(embedded_server: Server):
    room = room_name("prehandshake")
    url = f"{embedded_server.ws_url}/{room}"
    writer = await RawClient.open(url)
    await writer.handshake()
    silent = await RawClient.open(url)  # connected, but has not sent SYNC step 1
    # it joined the room: the server's SYNC step 1 came
    await silent.wait_for(lambda m: m.sync_type is YSyncMessageType.SYNC_STEP1)
    await writer.edit("abc")
    await writer.barrier()  # the edit is handled (and was fanned out)
    await silent.handshake()  # answered after anything the edit sent it
    assert sync_payloads(silent.frames, YSyncMessageType.SYNC_UPDATE) == []
    assert silent.text() == "abc"  # the handshake brings everything
    await writer.close()
    await silent.close()


# --- awareness -------------------------------------------------------------------------


@pytest.mark.node
async def test_awareness_removed_by_the_server_when_a_client_disconnects(embedded_server,
                                                                         ydriver):
    """A client that drops its socket says no goodbye: the server announces its removal
    (well before y-protocols' 30 s timeout would remove it on the other clients)."""
    room = room_name("awareness")
    a = await ydriver.connect(embedded_server.ws_url, room, awareness={"user": "a"})
    b = await ydriver.connect(embedded_server.ws_url, room, awareness={"user": "b"})
    await b.wait_awareness(a.client_id, state={"user": "a"})
    await a.kill()
    await b.wait_awareness(a.client_id, present=False, timeout=10)


async def test_query_awareness_is_answered_with_the_known_states(embedded_server: Server):
    room = room_name("query")
    url = f"{embedded_server.ws_url}/{room}"
    a = await RawClient.open(url)
    await a.send(create_awareness_message(encode_awareness_update(
        [AwarenessEntry(4242, 1, '{"user":"a"}')])))
    await a.barrier()  # the state is known
    b = await RawClient.open(url)
    mark = await b.barrier() + 1  # after what b got when it joined
    await b.send(create_query_awareness_message())
    end = await b.barrier()
    answers = [decode_awareness_update(m.payload) for f in b.frames[mark:end]
               for m in f.messages if m.type is YMessageType.AWARENESS]
    assert answers == [[AwarenessEntry(4242, 1, '{"user":"a"}')]]
    await a.close()
    await b.close()


# --- bad input -------------------------------------------------------------------------

GARBAGE = {
    "empty frame": (b"", close_codes.PROTOCOL_ERROR),
    "truncated varUint": (b"\x80", close_codes.PROTOCOL_ERROR),
    "unknown message type": (b"\x07", close_codes.PROTOCOL_ERROR),
    "unknown sync type": (b"\x00\x09\x00", close_codes.PROTOCOL_ERROR),
    "length past the end": (b"\x00\x02" + write_var_uint(5000) + b"abc",
                            close_codes.PROTOCOL_ERROR),
    "invalid update": (b"\x00\x02\x03\x01\x02\x03", close_codes.PROTOCOL_ERROR),
    "invalid state vector": (b"\x00\x00\x01\xff", close_codes.PROTOCOL_ERROR),
    "awareness not JSON": (create_awareness_message(b"\x01\x01\x01\x03{no"),
                           close_codes.PROTOCOL_ERROR),
    "oversized frame": (b"\x00\x02" + write_var_uint(TEST_MAX_MESSAGE_SIZE + 10)
                        + bytes(TEST_MAX_MESSAGE_SIZE + 10), close_codes.TOO_BIG),
}


@pytest.mark.node
@pytest.mark.parametrize("label", list(GARBAGE))
async def test_garbage_closes_only_the_sender(embedded_server: Server, ydriver, label: str):
    frame, code = GARBAGE[label]
    room = room_name("garbage")
    a = await ydriver.connect(embedded_server.ws_url, room)
    b = await ydriver.connect(embedded_server.ws_url, room)
    await a.append("before ")
    await b.wait_text("before ")
    bad = await RawClient.open(f"{embedded_server.ws_url}/{room}")
    await bad.handshake()
    await bad.send(frame)
    assert await bad.wait_closed() == code
    await a.append("after")
    assert await b.wait_text("before after") == "before after"
    late = await ydriver.connect(embedded_server.ws_url, room)
    assert await late.text() == "before after"
    assert f"({code})" in embedded_server.log()


async def test_text_frame_is_refused(embedded_server: Server):
    client = await RawClient.open(f"{embedded_server.ws_url}/{room_name('text')}")
    await client.ws.send("hello")
    assert await client.wait_closed() == close_codes.UNSUPPORTED_DATA


# --- authentication of the shipped application -----------------------------------------


async def test_anonymous_clients_are_refused_by_default(private_server: Server):
    with pytest.raises(InvalidStatus) as refused:
        await RawClient.open(f"{private_server.ws_url}/{room_name('private')}")
    assert refused.value.response.status_code == 403


async def test_cross_site_browser_origin_is_refused(embedded_server: Server):
    url = f"{embedded_server.ws_url}/{room_name('origin')}"
    with pytest.raises(InvalidStatus):
        await RawClient.open(url, headers={"Origin": "https://evil.example"})
    ok = await RawClient.open(url, headers={"Origin": f"http://127.0.0.1:{embedded_server.port}"})
    await ok.handshake()
    await ok.close()


async def test_awareness_echoes_are_not_relayed(embedded_server: Server):
    # Yjs clients send back every awareness change they receive; only news is relayed (to
    # everyone: its sender gets it back too, which keeps an idle client's connection alive).
    room = room_name("echo")
    url = f"{embedded_server.ws_url}/{room}"
    clients = [await RawClient.open(url) for _ in range(3)]
    marks = [await c.barrier() + 1 for c in clients]
    state = create_awareness_message(encode_awareness_update([AwarenessEntry(7, 3, '{"a":1}')]))
    await clients[0].send(state)
    await clients[0].barrier()  # handled: the others got the news before any echo
    await clients[1].send(state)  # the echo
    await clients[2].send(state)
    for echoing in clients[1:]:  # the echoes are handled
        await echoing.barrier()
    ends = [await c.barrier() for c in clients]
    received = [[decode_awareness_update(m.payload) for f in c.frames[mark:end]
                 for m in f.messages if m.type is YMessageType.AWARENESS]
                for c, mark, end in zip(clients, marks, ends, strict=True)]
    news = [[AwarenessEntry(7, 3, '{"a":1}')]]
    assert received == [news, news, news]
    for client in clients:
        await client.close()


async def test_a_client_coming_back_under_an_old_clock_is_told_of_its_removal(
        embedded_server: Server):
    """The room removed the state of a connection that closed (clock + 1); the client comes
    back on a new connection with the clock it had. The room answers it with the removal,
    which makes a y-protocols client raise its clock and announce itself again."""
    room = room_name("comeback")
    url = f"{embedded_server.ws_url}/{room}"
    other = await RawClient.open(url)
    first = await RawClient.open(url)
    await first.send(create_awareness_message(
        encode_awareness_update([AwarenessEntry(7, 3, '{"a":1}')])))
    await asyncio.sleep(0.2)
    await first.close()
    await asyncio.sleep(0.2)
    again = await RawClient.open(url)
    await asyncio.sleep(0.1)
    marks = [len(other.frames), len(again.frames)]
    await again.send(create_awareness_message(
        encode_awareness_update([AwarenessEntry(7, 3, '{"a":1}')])))
    await asyncio.sleep(0.3)

    def awareness(client: RawClient, mark: int) -> list:
        return [decode_awareness_update(m.payload) for f in client.frames[mark:]
                for m in f.messages if m.type is YMessageType.AWARENESS]

    assert awareness(again, marks[1]) == [[AwarenessEntry(7, 4, "null")]]
    assert awareness(other, marks[0]) == []  # nothing to relay: old news
    await again.send(create_awareness_message(
        encode_awareness_update([AwarenessEntry(7, 5, '{"a":1}')])))
    await asyncio.sleep(0.3)
    assert awareness(other, marks[0]) == [[AwarenessEntry(7, 5, '{"a":1}')]]
    for client in (other, again):
        await client.close()
