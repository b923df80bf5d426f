"""The in-process ASGI bridge and the close-code translation, against small ASGI apps.

No Jupyter server here: :class:`AsgiBackend` is driven directly, the way the handlers drive
it, and the ASGI apps record what they receive. What it proves: scopes carry the decoded path,
the raw path, the identity and the Django side's host; an HTTP body goes in and the response
comes back; a websocket's frames travel both ways in order, with backpressure in both
directions; refusals, closes by either side and failures of the app reach the other side with
the right codes; ``stop`` releases every connection.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from jupyter_ydjango.api.identity import SCOPE_KEY, Identity
from jupyter_ydjango.jupyter.backend import MAX_REASON_BYTES, BackendError, client_close
from jupyter_ydjango.jupyter.bridge import AsgiBackend

ALICE = Identity("alice", "write", "Alice", "Al")


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met")
        await asyncio.sleep(0.005)


async def settle(rounds: int = 100) -> None:
    """Let every other task run until it waits on something (``rounds`` loop iterations):
    what has not happened by then is blocked, whatever the machine's speed."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# --- HTTP ---------------------------------------------------------------------------------


async def test_http_request_scope_and_response() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen["scope"] = scope
        seen["request"] = await receive()
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"application/json"), (b"x-other", b"1")]})
        await send({"type": "http.response.body", "body": b'{"a":', "more_body": True})
        await send({"type": "http.response.body", "body": b"1}"})

    backend = AsgiBackend(app)
    response = await backend.request("put", "/api/collaboration/session/d%C3%A9j%C3%A0/x%20y.ipynb",
                                     identity=ALICE, query="a=1", body=b"{}",
                                     content_type="application/json")
    assert (response.status, response.json(), response.content_type) == (
        201, {"a": 1}, "application/json")
    scope = seen["scope"]
    assert scope["type"] == "http" and scope["method"] == "PUT"
    assert scope["path"] == "/api/collaboration/session/déjà/x y.ipynb"
    assert scope["raw_path"] == b"/api/collaboration/session/d%C3%A9j%C3%A0/x%20y.ipynb"
    assert scope["query_string"] == b"a=1"
    assert scope[SCOPE_KEY] == ALICE
    headers = dict(scope["headers"])
    assert headers[b"host"] == b"localhost"
    assert headers[b"content-type"] == b"application/json"
    assert seen["request"] == {"type": "http.request", "body": b"{}", "more_body": False}


async def test_http_disconnect_only_after_the_response() -> None:
    # Django cancels a view when receive() says the client left; it must not say so early.
    events: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()

        async def listen() -> None:
            message = await receive()
            events.append(message["type"])

        listener = asyncio.get_running_loop().create_task(listen())
        await asyncio.sleep(0.05)
        events.append("responding")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        await listener

    response = await AsgiBackend(app).request("GET", "/x", identity=ALICE)
    assert response.status == 204 and response.content_type is None
    assert events == ["responding", "http.disconnect"]


async def test_http_failures_become_backend_errors() -> None:
    async def broken(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(10)

    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        return None

    with pytest.raises(BackendError) as error:
        await AsgiBackend(broken).request("GET", "/x", identity=ALICE)
    assert error.value.status == 500
    with pytest.raises(BackendError) as error:
        await AsgiBackend(slow, request_timeout=0.1).request("GET", "/x", identity=ALICE)
    assert error.value.status == 504
    with pytest.raises(BackendError) as error:
        await AsgiBackend(silent).request("GET", "/x", identity=ALICE)
    assert error.value.status == 502


# --- websockets -----------------------------------------------------------------------------


class EchoApp:
    """Accepts, records every event, echoes frames; ``close_after`` frames it closes."""

    def __init__(self, *, close_after: int | None = None, close_code: int = 4409,
                 refuse: int | None = None, read: bool = True) -> None:
        self.events: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {}
        self.close_after = close_after
        self.close_code = close_code
        self.refuse = refuse
        self.read = read
        self.done = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        try:
            self.events.append(await receive())
            if self.refuse is not None:
                await send({"type": "websocket.close", "code": self.refuse})
                self.events.append(await receive())
                return
            await send({"type": "websocket.accept"})
            if not self.read:
                await asyncio.sleep(3600)
            frames = 0
            while True:
                event = await receive()
                self.events.append(event)
                if event["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "bytes": event.get("bytes")})
                frames += 1
                if frames == self.close_after:
                    await send({"type": "websocket.close", "code": self.close_code,
                                "reason": "bye"})
        finally:
            self.done.set()


async def test_websocket_frames_both_ways_then_app_close() -> None:
    app = EchoApp(close_after=3)
    backend = AsgiBackend(app)
    conn = await backend.connect("/api/collaboration/room/json:notebook:f1", identity=ALICE,
                                 query="sessionId=s1")
    assert conn.accepted and conn.close_code is None
    assert app.scope["type"] == "websocket" and app.scope[SCOPE_KEY] == ALICE
    assert app.scope["query_string"] == b"sessionId=s1"
    assert app.events[0] == {"type": "websocket.connect"}
    for i in range(3):
        await conn.send(bytes([i]))
    assert [await conn.receive() for _ in range(3)] == [b"\x00", b"\x01", b"\x02"]
    assert await conn.receive() is None
    assert (conn.close_code, conn.close_reason) == (4409, "bye")
    await asyncio.wait_for(app.done.wait(), 1)
    assert app.events[-1] == {"type": "websocket.disconnect", "code": 4409}
    await conn.send(b"late")  # dropped, does not block or raise
    assert not backend._connections


async def test_websocket_refused_before_accept() -> None:
    app = EchoApp(refuse=4403)
    conn = await AsgiBackend(app).connect("/r", identity=ALICE)
    assert not conn.accepted and conn.close_code == 4403
    assert await conn.receive() is None
    await asyncio.wait_for(app.done.wait(), 1)
    assert app.events[-1] == {"type": "websocket.disconnect", "code": 4403}


async def test_client_close_delivers_queued_frames_first() -> None:
    app = EchoApp()
    conn = await AsgiBackend(app).connect("/r", identity=ALICE)
    for i in range(5):
        await conn.send(b"edit %d" % i)
    conn.close(1001)
    conn.close(1000)  # twice: no effect
    await asyncio.wait_for(app.done.wait(), 1)
    received = [e.get("bytes") for e in app.events if e["type"] == "websocket.receive"]
    assert received == [b"edit %d" % i for i in range(5)]
    assert app.events[-1] == {"type": "websocket.disconnect", "code": 1001}
    assert await conn.receive() is None  # nothing more for a client that left


async def test_backpressure_towards_a_slow_app() -> None:
    app = EchoApp(read=False)  # accepts, then never calls receive()
    conn = await AsgiBackend(app, max_queued_frames=4).connect("/r", identity=ALICE)
    sent = 0

    async def sender() -> None:
        nonlocal sent
        for i in range(100):
            await conn.send(bytes([i]))
            sent += 1

    task = asyncio.get_running_loop().create_task(sender())
    await eventually(lambda: sent >= 4)
    await settle()
    assert sent == 4, "the sender waits once the app is 4 frames behind"
    conn.close(1000)  # a client that leaves releases a blocked sender
    await asyncio.wait_for(task, 1)


async def test_backpressure_towards_a_slow_client() -> None:
    produced = 0
    finished = asyncio.Event()

    async def producer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal produced
        await receive()
        await send({"type": "websocket.accept"})
        for i in range(100):
            await send({"type": "websocket.send", "bytes": bytes([i])})
            produced += 1
        await send({"type": "websocket.close", "code": 1000})
        finished.set()

    conn = await AsgiBackend(producer, max_queued_frames=4,
                             max_queued_bytes=1 << 20).connect("/r", identity=ALICE)
    await eventually(lambda: produced >= 4)
    await settle()
    assert produced == 4, "the app's send() waits while the client has not taken 4 frames"
    frames = []
    while (frame := await conn.receive()) is not None:
        frames.append(frame)
    assert frames == [bytes([i]) for i in range(100)]
    assert conn.close_code == 1000
    await asyncio.wait_for(finished.wait(), 1)


async def test_byte_budget_lets_one_big_frame_through() -> None:
    app = EchoApp(read=False)
    conn = await AsgiBackend(app, max_queued_frames=100,
                             max_queued_bytes=1000).connect("/r", identity=ALICE)
    await asyncio.wait_for(conn.send(b"x" * 5000), 1)  # alone: let in whatever its size
    blocked = asyncio.get_running_loop().create_task(conn.send(b"y"))
    await settle()
    assert not blocked.done()
    conn.close(1000)
    await asyncio.wait_for(blocked, 1)


async def test_app_failures_close_with_1011() -> None:
    async def crash_after_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "bytes": b"hello"})
        raise RuntimeError("boom")

    async def crash_before_accept(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async def never_answers(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    conn = await AsgiBackend(crash_after_accept).connect("/r", identity=ALICE)
    assert conn.accepted
    assert await conn.receive() == b"hello"
    assert await conn.receive() is None and conn.close_code == 1011

    conn = await AsgiBackend(crash_before_accept).connect("/r", identity=ALICE)
    assert not conn.accepted and conn.close_code == 1011

    backend = AsgiBackend(never_answers, connect_timeout=0.1)
    conn = await backend.connect("/r", identity=ALICE)
    assert not conn.accepted and conn.close_code == 1011
    await backend.stop(timeout=0.1)


async def test_stop_closes_every_connection() -> None:
    apps = [EchoApp() for _ in range(3)]
    backend = AsgiBackend(lambda s, r, w: apps[int(s["path"][-1])](s, r, w))
    conns = [await backend.connect(f"/r{i}", identity=ALICE) for i in range(3)]
    await backend.stop(timeout=1)
    for app, conn in zip(apps, conns, strict=True):
        assert app.done.is_set()
        assert app.events[-1] == {"type": "websocket.disconnect", "code": 1001}
        assert await conn.receive() is None
    assert not backend._connections


# --- close codes for the browser --------------------------------------------------------------


def test_stale_session_becomes_1003_with_a_reloadable_reason() -> None:
    code, reason = client_close(4409, "", "e4a1-session")
    assert code == 1003
    assert json.loads(reason) == {"reason": "unknown_session", "sessionId": "e4a1-session",
                                  "reloadable": True}


def test_other_codes_pass_through_and_abnormal_ones_become_1011() -> None:
    for code in (1000, 1001, 4400, 4401, 4403, 4404, 4413, 4415, 4500, 4503):
        assert client_close(code, "why", "s") == (code, "why")
    for code in (None, 1005, 1006, 1015, 999, 5000):
        assert client_close(code, "", "s")[0] == 1011


def test_close_reasons_fit_in_a_close_frame() -> None:
    code, reason = client_close(4409, "", "é" * 500)
    assert code == 1003 and len(reason.encode()) <= MAX_REASON_BYTES
    assert json.loads(reason)["reloadable"] is True
    code, reason = client_close(4500, "ü" * 200, "s")
    assert len(reason.encode()) <= MAX_REASON_BYTES
