"""Nothing acknowledged is lost: the log's compaction, failing saves, outside changes.

Real service processes (:class:`~docserver.DocServer`) and frame-level clients
(:mod:`rawclient`), which can send an update without the one it builds on.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pycrdt
from docserver import DocServer
from rawclient import RawClient

from jupyter_ydjango.yutils import create_update_message

TEXT_FILE = {"format": "text", "type": "file"}


async def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


async def test_an_update_whose_dependency_comes_later_outlives_the_compaction(
        tmp_path: Path) -> None:
    """A client's u2 reaches the room, u1 (which u2 builds on) does not yet: the room unloads
    and its log is compacted; another process loads the room, u1 arrives: both are there."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "pending.txt").write_text("x")
    server = DocServer(tmp_path, root)
    try:
        session = server.session("pending.txt", TEXT_FILE)
        room = f"text:file:{session['fileId']}"
        client = await RawClient.open(server.room_url(session))
        await client.handshake()
        assert client.text("source") == "x"
        updates: list[bytes] = []
        subscription = client.doc.observe(lambda event: updates.append(event.update))
        text = client.doc.get("source", type=pycrdt.Text)
        text.insert(1, "a")
        text.insert(2, "b")
        u1, u2 = updates
        del subscription
        await client.send(create_update_message(u2))
        await client.barrier()
        await client.close()
        await wait_until(lambda: f"room {room} unloaded" in server.log(), what="the unload")
        server.stop()
        server.start()  # another process, from the compacted log
        later = await RawClient.open(server.room_url(session))
        await later.handshake()
        assert later.text("source") == "x", "u2 waits for u1"
        await later.send(create_update_message(u1))
        await later.barrier()
        assert later.text("source") == "xab"
        await wait_until(lambda: (root / "pending.txt").read_text() == "xab",
                         what="both edits saved")
        await later.close()
    finally:
        server.stop()
