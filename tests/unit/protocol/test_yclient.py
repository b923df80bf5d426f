"""Self-test of the node Yjs client harness (tests/support/js/driver.mjs and
tests/support/yjs_client.py).

Runs against a tiny y-websocket-compatible relay written with ``websockets``: every binary
frame is relayed to all other connections on the same path, and a client's SYNC step 1 is
answered with an empty SYNC step 2 so that the provider reaches ``synced``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from http import HTTPStatus

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from yjs_client import DriverError, NodeDriver

pytestmark = pytest.mark.node

#: messageSync, messageYjsSyncStep2, a 2-byte update: 0 structs, empty delete set
EMPTY_STEP2 = b"\x00\x01\x02\x00\x00"
SYNC_STEP1 = b"\x00\x00"


@pytest.fixture
async def relay_url() -> AsyncIterator[str]:
    """Base URL of a relay server; ``/close4403/...`` is closed, ``/forbidden/...`` refused."""
    rooms: dict[str, set[ServerConnection]] = defaultdict(set)

    def process_request(connection: ServerConnection, request: Request) -> Response | None:
        if request.path.startswith("/forbidden"):
            return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
        return None

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path.split("?", 1)[0]
        if path.startswith("/close4403"):
            await ws.close(4403, "go away")
            return
        peers = rooms[path]
        peers.add(ws)
        try:
            async for message in ws:
                if isinstance(message, str):
                    continue
                if message.startswith(SYNC_STEP1):
                    await ws.send(EMPTY_STEP2)
                for peer in list(peers):
                    if peer is not ws:
                        with contextlib.suppress(ConnectionClosed):
                            await peer.send(message)
        finally:
            peers.discard(ws)

    async with serve(handler, "127.0.0.1", 0, process_request=process_request) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def test_text_syncs_between_clients(ydriver: NodeDriver, relay_url: str) -> None:
    a = await ydriver.connect(relay_url, "room1", params={"token": "x y"})
    b = await ydriver.connect(relay_url, "room1")
    assert a.client_id != b.client_id
    assert (await a.info())["url"] == f"{relay_url}/room1?token=x%20y"

    await a.append("hello")
    assert await b.wait_text("hello", timeout=20) == "hello"
    await b.insert(0, ">> ")
    await b.delete(3, 1)
    assert await a.wait_text(">> ello", timeout=20) == ">> ello"

    # a late joiner gets the content (the relay forwards its step 1 to the others)
    c = await ydriver.connect(relay_url, "room1")
    assert await c.wait_text(length=7, timeout=20) == ">> ello"

    # state / apply round trip through a client in another room
    d = await ydriver.connect(relay_url, "room2")
    await d.apply(await a.state())
    assert await d.text() == ">> ello"

    with pytest.raises(DriverError) as info:
        await a.wait_text("never", timeout=0.2)
    assert info.value.reply["text"] == ">> ello"


async def test_awareness(ydriver: NodeDriver, relay_url: str) -> None:
    a = await ydriver.connect(relay_url, "aw")
    b = await ydriver.connect(relay_url, "aw")
    await a.set_awareness({"user": {"name": "alice"}, "cursor": None})
    elapsed = await b.wait_awareness(
        a.client_id, state={"cursor": None, "user": {"name": "alice"}}, timeout=3
    )
    assert elapsed >= 0
    states = await b.awareness()
    assert states[a.client_id] == {"user": {"name": "alice"}, "cursor": None}
    assert b.client_id in states

    # closing the provider sends the awareness null state
    await a.close()
    await b.wait_awareness(a.client_id, present=False, timeout=20)


async def test_kill_records_close_and_sends_no_goodbye(ydriver: NodeDriver, relay_url: str) -> None:
    a = await ydriver.connect(relay_url, "k", reconnect=True)
    b = await ydriver.connect(relay_url, "k")
    await a.set_awareness({"user": "a"})
    await b.wait_awareness(a.client_id, state={"user": "a"}, timeout=20)

    event = await a.kill()
    assert event is not None
    assert event["code"] == 1006
    assert not event["local"]
    closes = await a.close_events()
    assert [e["code"] for e in closes] == [1006]
    assert (await a.info())["should_connect"] is False

    # no awareness goodbye was sent: b still sees a
    with pytest.raises(DriverError):
        await b.wait_awareness(a.client_id, present=False, timeout=0.3)
    # ... and a does not come back
    await asyncio.sleep(0.3)
    assert [e["code"] for e in await a.close_events()] == [1006]


async def test_close_codes_are_reported(ydriver: NodeDriver, relay_url: str) -> None:
    with pytest.raises(DriverError) as info:
        await ydriver.connect(relay_url, "close4403/r", reconnect=False, timeout=20)
    assert info.value.reply["code"] == 4403
    assert info.value.reply["reason"] == "go away"
    types = [e["type"] for e in info.value.reply["events"]]
    assert "closed" in types  # y-websocket 3 gives up by itself on 4400-4499

    with pytest.raises(DriverError) as info:
        await ydriver.connect(relay_url, "forbidden/r", reconnect=False, timeout=20)
    assert info.value.reply["code"] == 1006
    client = ydriver.client_from(info.value)
    errors = [e for e in await client.events() if e["type"] == "connection-error"]
    assert "403" in errors[0]["message"]
    assert (await client.info())["should_connect"] is False


async def test_burst_and_watch(ydriver: NodeDriver, relay_url: str) -> None:
    a = await ydriver.connect(relay_url, "burst")
    b = await ydriver.connect(relay_url, "burst")
    before = await ydriver.now()
    await b.watch()
    sent = await a.burst(30, interval_ms=0)
    sent += await a.burst(5, interval_ms=10, chars="-")
    assert [s["length_after"] for s in sent] == list(range(1, 36))
    assert await b.wait_text(length=35, timeout=20) == "abcdefghijklmnopqrstuvwxyzabcd-----"

    seen = await b.watched()
    assert seen[-1]["length"] == 35
    assert not any(s["local"] for s in seen)
    times = [s["t"] for s in seen]
    assert times == sorted(times)
    assert before <= sent[0]["t"] <= seen[0]["t"] <= await ydriver.now()
    assert sent[-1]["t"] - sent[-5]["t"] >= 35  # 10 ms apart


async def test_driver_survives_bad_commands(ydriver: NodeDriver, relay_url: str) -> None:
    with pytest.raises(DriverError, match="unknown command"):
        await ydriver.call("nope")
    with pytest.raises(DriverError, match="unknown client"):
        await ydriver.call("insert", id="ghost", index=0, text="x")
    a = await ydriver.connect(relay_url, "r", wait_sync=False)
    with pytest.raises(DriverError, match="Unexpected end of array"):
        await a.apply(b"\xff\xff\xff")  # Y.applyUpdate throws on garbage
    with pytest.raises(DriverError, match="already exists"):
        await ydriver.connect(relay_url, "r", name=a.name)
    assert await a.append("ok") == 2
    await a.close()
    with pytest.raises(DriverError, match="closed"):
        await a.append("x")
