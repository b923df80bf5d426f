"""Read-only connections (``self.read_only = True`` in ``connect``) on a real daphne server.

``seedapp``'s ``ReadOnlyConsumer`` (route ``ro/<room>``) makes a connection read-only when its
query string has ``mode=read``: it gets the document and its changes, its awareness reaches
the others, but its document changes are refused with an AUTH permission-denied message.
"""

from __future__ import annotations

import pycrdt
import pytest
from daphne_servers import Server
from frame_client import RawClient
from yjs_client import NodeDriver

from jupyter_ydjango.protocol.messages import (
    AwarenessEntry,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_step1_message,
    create_sync_step2_message,
    create_update_message,
    encode_awareness_update,
    read_permission_denied,
)

SETTINGS = "seedapp.settings"


@pytest.fixture(scope="module")
def server(seedapp_server: Server) -> Server:
    """The seedapp server (route ``ro/<room>``: ``ReadOnlyConsumer``)."""
    return seedapp_server


def base(server: Server) -> str:
    return f"ws://127.0.0.1:{server.port}/ro"


async def wait_text(client: RawClient, expected: str, timeout: float = 10) -> None:
    try:
        await client.wait_for(lambda _message: client.text() == expected, timeout)
    except TimeoutError:
        raise AssertionError(f"text is {client.text()!r}, expected {expected!r}") from None


def is_auth(message) -> bool:
    return message.type is YMessageType.AUTH


def text_of(update: bytes) -> str:
    doc = pycrdt.Doc()
    doc.apply_update(update)
    return str(doc.get("t", type=pycrdt.Text))


def local_update(client: RawClient, text: str) -> bytes:
    """Append ``text`` to the client's own document without sending it; return the update."""
    before = client.doc.get_state()
    ytext = client.doc.get("t", type=pycrdt.Text)
    with client.doc.transaction():
        ytext += text
    return client.doc.get_update(before)


@pytest.mark.node
@pytest.mark.parametrize("how", ["update", "sync-step2"])
async def test_reader_gets_the_document_but_cannot_change_it(
    server: Server, ydriver: NodeDriver, how: str
) -> None:
    room = f"doc-{how}"
    writer = await ydriver.connect(base(server), room)  # a real y-websocket client
    await writer.append("hello")
    # a second writer; once it has the text, the server has it too
    watcher = await RawClient.open(f"{base(server)}/{room}")
    reader = None
    fresh = None
    try:
        await watcher.handshake()
        await wait_text(watcher, "hello")

        reader = await RawClient.open(f"{base(server)}/{room}?mode=read")
        await reader.handshake()
        step2 = next(m for f in reader.frames for m in f.messages
                     if m.sync_type is YSyncMessageType.SYNC_STEP2)
        assert text_of(step2.payload) == "hello"
        assert not any(is_auth(m) for f in reader.frames for m in f.messages)

        # the reader tries to write, as an update or as a step 2 answering the server
        update = local_update(reader, "READER")
        make = create_update_message if how == "update" else create_sync_step2_message
        await reader.send(make(update))
        denied = await reader.wait_for(is_auth)
        assert read_permission_denied(denied.payload)

        # the server handled the reader's frame before it answered; a change made after it
        # reaches the writers alone: the reader's text was never fanned out
        await writer.append(" world")
        await wait_text(watcher, "hello world")
        assert await writer.wait_text("hello world") == "hello world"
        fresh = await RawClient.open(f"{base(server)}/{room}")
        await fresh.handshake()
        assert fresh.text() == "hello world"

        # the reader still receives the room's changes
        await reader.wait_for(lambda _m: " world" in reader.text())
    finally:
        for client in (watcher, reader, fresh):
            if client is not None:
                await client.close()


async def test_reader_with_nothing_to_write_is_not_denied(server: Server) -> None:
    """A y-websocket client answers the server's step 1; an empty answer is no write."""
    reader = await RawClient.open(f"{base(server)}/quiet?mode=read")
    writer = None
    try:
        await reader.handshake()
        # the empty answer, then a step 1 in the same frame: the server's second step 2
        # comes after whatever it answered to the first message
        await reader.send(create_sync_step2_message(pycrdt.Doc().get_update())
                          + create_sync_step1_message(reader.doc.get_state()))
        step2s = [0]

        def second_step2(message) -> bool:
            step2s[0] += message.sync_type is YSyncMessageType.SYNC_STEP2
            return step2s[0] == 2

        await reader.wait_for(second_step2)
        writer = await RawClient.open(f"{base(server)}/quiet")
        await writer.handshake()
        await writer.edit("w")
        await wait_text(reader, "w")
        assert not any(is_auth(m) for f in reader.frames for m in f.messages)
    finally:
        for client in (reader, writer):
            if client is not None:
                await client.close()


@pytest.mark.node
async def test_reader_awareness_reaches_the_others(server: Server, ydriver: NodeDriver) -> None:
    room = "cursors"
    writer = await ydriver.connect(base(server), room, awareness={"name": "writer"})
    await writer.append("text")
    # a real y-websocket reader: synced, reads, and its presence is shown to the writer
    reader = await ydriver.connect(base(server), room, params={"mode": "read"},
                                   awareness={"name": "reader"})
    assert await reader.wait_text("text") == "text"
    await writer.wait_awareness(reader.client_id, state={"name": "reader"})
    await reader.wait_awareness(writer.client_id, state={"name": "writer"})

    # a raw reader announces a cursor by hand
    raw = await RawClient.open(f"{base(server)}/{room}?mode=read")
    try:
        await raw.handshake()
        state = '{"name":"raw reader","cursor":3}'
        await raw.send(create_awareness_message(
            encode_awareness_update([AwarenessEntry(4242, 1, state)])))
        await writer.wait_awareness(4242, state={"name": "raw reader", "cursor": 3})
        assert not any(is_auth(m) for f in raw.frames for m in f.messages)
    finally:
        await raw.close()
    # its cursor goes when it leaves
    await writer.wait_awareness(4242, present=False)


@pytest.mark.node
async def test_reader_joining_a_room_with_deletions_is_not_denied(
    server: Server, ydriver: NodeDriver
) -> None:
    # Yjs answers SYNC step 1 with its whole delete set: for a room with deletions, a reader's
    # answer is not empty though it changes nothing, and must not be refused.
    room = "doc-deletions"
    writer = await ydriver.connect(base(server), room)
    await writer.append("hello world")
    await writer.delete(0, 6)
    reader = await ydriver.connect(base(server), room, params={"mode": "read"})
    assert await reader.wait_text("world") == "world"
    raw = await RawClient.open(f"{base(server)}/{room}?mode=read")
    await raw.handshake()
    await wait_text(raw, "world")
    step1 = next(m for f in raw.frames for m in f.messages
                 if m.sync_type is YSyncMessageType.SYNC_STEP1)
    answer = raw.doc.get_update(step1.payload)
    assert answer != b"\x00\x00"  # the delete set travels
    await raw.send(create_sync_step2_message(answer))
    await raw.barrier()  # its answer arrives after any answer to the frame above
    assert not any(is_auth(m) for f in raw.frames for m in f.messages)
    await raw.close()
