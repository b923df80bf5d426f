"""Document history against a real ``python -m jupyter_ydjango serve`` process: the timeline
(points from the database, a copy moved through them, restoring a point) and forks.

Clients are pycrdt + jupyter_ydoc, doing what JupyterLab's stock frontend does: the timeline
connects the document's own copy to the timeline's room, moves it with undo/redo, and after
a restore connects the same copy back to the document's room.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from docclient import DocClient
from docserver import DocServer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

#: Seconds of quiet that end a burst on the test servers.
GAP = 0.6


def write_nb(path: Path) -> None:
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Title", id="md"),
                                       new_code_cell("x = 1", id="code")]), path)


def sources(client: DocClient) -> list[str]:
    return [cell["source"] for cell in client.model.get()["cells"]]


def file_sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells]


async def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


async def burst(client: DocClient, text: str) -> None:
    """Type ``text`` at the end of the code cell, a keystroke at a time, then pause long
    enough to end the burst; the save's answer is the barrier (the server holds it all)."""
    source = client.model.ycells[1]["source"]
    for char in text:
        source.insert(len(source), char)
        await asyncio.sleep(0.01)
    assert await client.save() == "success"
    await asyncio.sleep(GAP * 2)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocServer]:
    tmp = tmp_path_factory.mktemp("timeline")
    root = tmp / "root"
    root.mkdir()
    server = DocServer(tmp, root, YDJANGO_HISTORY_BURST_GAP=str(GAP))
    yield server
    server.stop()


class Timeline:
    """A notebook with three bursts of edits, and a client on it."""

    def __init__(self, server: DocServer, name: str) -> None:
        self.server, self.name, self.path = server, name, server.root / name
        write_nb(self.path)
        self.session = server.session(name)
        self.url = server.room_url(self.session)
        #: The code cell's source at each point: the import, then after each burst.
        self.code = ["x = 1", "x = 1 + a", "x = 1 + a + b", "x = 1 + a + b + c"]

    async def edit(self) -> DocClient:
        client = await DocClient.open(self.url)
        for text in (" + a", " + b", " + c"):
            await burst(client, text)
        assert sources(client)[1] == self.code[-1]
        return client

    def open(self, query: str = "") -> dict[str, Any]:
        status, body = self.server.request(
            "GET", f"api/collaboration/timeline/{self.name}?format=json&type=notebook{query}")
        assert status == 200, body
        return body

    def fork_url(self, fork_room: str, session_id: str | None = None) -> str:
        sid = self.session["sessionId"] if session_id is None else session_id
        return (f"ws://127.0.0.1:{self.server.port}/api/collaboration/room/{fork_room}"
                f"?sessionId={sid}")

    def undo_redo(self, action: str, steps: int | str, fork_room: str,
                  room_id: str | None = None) -> tuple[int, Any]:
        room = room_id or f"json:notebook:{self.session['fileId']}"
        return self.server.request(
            "PUT", f"api/collaboration/undo_redo/{room}?action={action}&&steps={steps}"
                   f"&&forkRoom={fork_room}")


async def test_one_point_per_burst_kept_by_compaction(server: DocServer) -> None:
    notebook = Timeline(server, "bursts.ipynb")
    client = await notebook.edit()
    first = notebook.open()
    assert first["roomId"] == f"json:notebook:{notebook.session['fileId']}"
    assert first["sessionId"] == notebook.session["sessionId"]
    assert len(first["timestamps"]) == 4, first["timestamps"]  # the import and three bursts
    assert first["timestamps"] == sorted(first["timestamps"])
    assert abs(first["timestamps"][-1] - time.time()) < 60
    # the room unloads; the log is folded into snapshots, one per burst
    await client.close()
    await wait_until(lambda: f"room {first['roomId']} unloaded" in server.log(),
                     what="the room unloaded")
    again = notebook.open()
    assert again["timestamps"] == first["timestamps"]
    assert again["forkRoom"] != first["forkRoom"]


async def test_undo_and_redo_move_the_copy_only(server: DocServer) -> None:
    notebook = Timeline(server, "slider.ipynb")
    editor = await notebook.edit()
    other = await DocClient.open(notebook.url)
    line = notebook.open()
    # the frontend connects the document's own copy to the timeline's room
    await editor.close()
    copy = await DocClient.open(notebook.fork_url(line["forkRoom"]), doc=editor.doc)
    assert sources(copy) == ["# Title", notebook.code[3]]
    for action, steps, point in (("undo", 1, 2), ("undo", 2, 0), ("redo", 1, 1),
                                 ("redo", 5, 3), ("undo", 3, 0)):
        status, body = notebook.undo_redo(action, steps, line["forkRoom"])
        assert status == 200, body
        assert body["status"] == ("undone" if action == "undo" else "redone")
        await copy.wait_for(lambda m, p=point: m.get()["cells"][1]["source"] == notebook.code[p])
        assert [c["source"] for c in other.model.get()["cells"]] == ["# Title", notebook.code[3]]
    status, body = notebook.undo_redo("undo", 1, line["forkRoom"])
    assert status == 200 and body == {"error": "No more undo operations available"}
    # the document never moved: its clients, the file, a new client
    assert await other.save() == "success"
    assert file_sources(notebook.path) == ["# Title", notebook.code[3]]
    fresh = await DocClient.open(notebook.url)
    assert sources(fresh) == ["# Title", notebook.code[3]]
    for client in (copy, other, fresh):
        await client.close()


async def test_restore_brings_the_point_back_for_everyone(server: DocServer) -> None:
    notebook = Timeline(server, "restore.ipynb")
    editor = await notebook.edit()
    other = await DocClient.open(notebook.url)
    line = notebook.open()
    await editor.close()
    copy = await DocClient.open(notebook.fork_url(line["forkRoom"]), doc=editor.doc)
    status, _ = notebook.undo_redo("undo", 2, line["forkRoom"])
    assert status == 200
    await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[1])
    status, body = notebook.undo_redo("restore", 0, line["forkRoom"])
    assert status == 200, body
    assert body == {"code": 200, "status": "Document restored successfully"}
    # the other client sees the point; the copy's room is closed; the frontend connects
    # its copy back to the document
    await other.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[1])
    assert await copy.wait_closed() == 4404
    back = await DocClient.open(notebook.url, doc=copy.doc)
    await asyncio.sleep(0.2)
    for client in (back, other):
        assert sources(client) == ["# Title", notebook.code[1]], "once each, no duplicate"
    assert await other.save() == "success"
    assert file_sources(notebook.path) == ["# Title", notebook.code[1]]
    # the restore is an edit: the timeline goes on, with the restored point as its last
    status, _ = notebook.undo_redo("undo", 1, line["forkRoom"])
    assert status == 404, "the copy was deleted"
    later = notebook.open()
    assert len(later["timestamps"]) == 5
    for client in (back, other):
        await client.close()
