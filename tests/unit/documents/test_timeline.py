"""Document history against a real ``python -m jupyter_ydjango serve`` process: the timeline
(points from the database, a copy moved through them, restoring a point) and forks.

Clients are pycrdt + jupyter_ydoc, doing what JupyterLab's stock frontend does: the timeline
connects the document's own copy to the timeline's room, moves it with undo/redo, and after
a restore connects the same copy back to the document's room.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html import unescape as html_unescape
from pathlib import Path
from typing import Any

import nbformat
import pycrdt
import pytest
from backing_services import PgDatabase, postgres_user
from conftest import redis_running
from django_service import DocServer
from jupyter_ydoc import YNotebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_client import DocClient
from signed import signed

from jupyter_ydjango.api.identity import Identity

#: Seconds of quiet that end a burst on the test servers.
GAP = 0.6
#: The identity secret of the module's server (signed headers make readers).
SECRET = "timeline-tests-secret-of-at-least-32-bytes"


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
    server = DocServer(tmp, root, YDJANGO_HISTORY_BURST_GAP=str(GAP),
                       YDJANGO_IDENTITY_SECRET=SECRET)
    yield server
    server.stop()


class Timeline:
    """A notebook with three bursts of edits, and a client on it."""

    def __init__(self, server: DocServer, name: str, write: bool = True) -> None:
        self.server, self.name, self.path = server, name, server.root / name
        if write:
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
    assert again["forkRoom"] == first["forkRoom"], "the user's copy, reused"


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
    append(other, 0, " meanwhile")  # the document goes on while the slider moves
    assert await other.save() == "success"
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


async def test_the_timeline_reaches_back_across_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    server = DocServer(tmp_path, root, YDJANGO_HISTORY_BURST_GAP=str(GAP))
    try:
        notebook = Timeline(server, "restart.ipynb")
        editor = await notebook.edit()
        before = notebook.open()
        await editor.close()
        server.stop()
        server.start()
        notebook.session = server.session(notebook.name)
        after = notebook.open()
        assert after["timestamps"] == before["timestamps"]
        copy = await DocClient.open(notebook.fork_url(after["forkRoom"]))
        status, _ = notebook.undo_redo("undo", 3, after["forkRoom"])
        assert status == 200
        await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[0])
        await copy.close()
    finally:
        server.stop()


def update_rows(server: DocServer, file_id: str) -> int:
    """How many update-log rows the document has in the server's SQLite database."""
    con = sqlite3.connect(server.tmp / "data" / "ydjango.sqlite3")
    try:
        return con.execute("SELECT COUNT(*) FROM jupyter_ydjango_update WHERE document_id = ?",
                           (file_id.replace("-", ""),)).fetchone()[0]
    finally:
        con.close()


async def add_cell(client: DocClient, source: str) -> float:
    """Add a code cell at the end, as JupyterLab's "insert below" does; when (monotonic)."""
    client.model.append_cell({"cell_type": "code", "source": source, "metadata": {},
                              "outputs": [], "execution_count": None})
    await client.flush()
    return time.monotonic()


async def test_each_burst_is_a_point_though_an_autosave_follows_it(tmp_path: Path) -> None:
    """Cells added one at a time, each more than the burst gap after the one before, but
    less than the gap after the autosave that the one before caused: every addition is a
    point, before and after the log is folded, and each point shows its notebook."""
    gap, save_delay = 1.0, 0.4
    root = tmp_path / "root"
    root.mkdir()
    server = DocServer(tmp_path, root, YDJANGO_HISTORY_BURST_GAP=str(gap),
                       YDJANGO_SAVE_DELAY=str(save_delay))
    try:
        notebook = Timeline(server, "autosaved.ipynb")
        client = await DocClient.open(notebook.url)
        expected = [["# Title", "x = 1"]]
        for n in range(3):
            edited = await add_cell(client, f"cell {n}")
            expected.append([*expected[-1], f"cell {n}"])
            await wait_until(lambda e=expected[-1]: file_sources(notebook.path) == e,
                             what="the autosave")
            saved = time.monotonic()
            await asyncio.sleep(max(0.0, edited + 1.3 * gap - time.monotonic()))
            if n < 2:  # the next edit comes within the gap after the save's change
                assert time.monotonic() - saved < gap, "too slow: the test proves nothing"

        def check(line: dict[str, Any]) -> None:
            assert len(line["timestamps"]) == 4, line["timestamps"]

        async def walk(line: dict[str, Any]) -> None:
            copy = await DocClient.open(notebook.fork_url(line["forkRoom"]))
            try:
                assert sources(copy) == expected[3]
                for action, steps, point in (("undo", 1, 2), ("undo", 1, 1), ("undo", 1, 0),
                                             ("redo", 2, 2), ("redo", 1, 3), ("undo", 2, 1)):
                    status, body = notebook.undo_redo(action, steps, line["forkRoom"])
                    assert status == 200, body
                    await copy.wait_for(lambda m, p=point: [c["source"] for c in m.get()["cells"]]
                                        == expected[p])
            finally:
                await copy.close()

        line = notebook.open()
        check(line)
        await walk(line)
        # folded into snapshots: the room unloads (the log is compacted), then reopen
        await client.close()
        await wait_until(lambda: f"room {line['roomId']} unloaded" in server.log(),
                         what="the room unloaded")
        assert update_rows(server, notebook.session["fileId"]) == 0, "not folded"
        again = notebook.open()
        assert again["timestamps"] == line["timestamps"]
        await walk(again)  # leaves the copy at point 1
        # restored from the folded history: the room loads again, and the file follows
        status, body = notebook.undo_redo("restore", 0, again["forkRoom"])
        assert status == 200, body
        await wait_until(lambda: file_sources(notebook.path) == expected[1],
                         what="the restored point saved")
        reader = await DocClient.open(notebook.url)
        assert sources(reader) == expected[1]
        await reader.close()
    finally:
        server.stop()


async def test_edits_within_the_gap_are_one_point(tmp_path: Path) -> None:
    gap = 1.0
    root = tmp_path / "root"
    root.mkdir()
    server = DocServer(tmp_path, root, YDJANGO_HISTORY_BURST_GAP=str(gap),
                       YDJANGO_SAVE_DELAY="0.1")
    try:
        notebook = Timeline(server, "quick.ipynb")
        client = await DocClient.open(notebook.url)
        for n in range(3):
            await add_cell(client, f"cell {n}")
            await asyncio.sleep(0.5 * gap)  # the autosave comes between two of them
        assert await client.save() == "success"
        line = notebook.open()
        assert len(line["timestamps"]) == 2, line["timestamps"]  # the import, one burst
        copy = await DocClient.open(notebook.fork_url(line["forkRoom"]))
        status, _ = notebook.undo_redo("undo", 1, line["forkRoom"])
        assert status == 200
        await copy.wait_for(lambda m: [c["source"] for c in m.get()["cells"]]
                            == ["# Title", "x = 1"])
        await copy.close()
        await client.close()
    finally:
        server.stop()


# --- forks --------------------------------------------------------------------------------


class Forks:
    """The fork API of a notebook."""

    def __init__(self, server: DocServer, name: str, write: bool = True) -> None:
        self.server, self.path = server, server.root / name
        if write:
            write_nb(self.path)
        self.session = server.session(name)
        self.room = f"json:notebook:{self.session['fileId']}"
        self.url = server.room_url(self.session)

    def create(self, **body: Any) -> dict[str, Any]:
        status, answer = self.server.request("PUT", f"api/collaboration/fork/{self.room}", body)
        assert status == 201, answer
        return answer

    def delete(self, fork_id: str, merge: str) -> tuple[int, Any]:
        return self.server.request("DELETE", f"api/collaboration/fork/{fork_id}?merge={merge}")

    def listed(self) -> dict[str, Any]:
        status, answer = self.server.request("GET", f"api/collaboration/fork/{self.room}")
        assert status == 200, answer
        return answer

    async def open_fork(self, answer: dict[str, Any]) -> DocClient:
        return await DocClient.open(
            f"ws://127.0.0.1:{self.server.port}/api/collaboration/room/{answer['fork_roomid']}"
            f"?sessionId={answer['sessionId']}")


def append(client: DocClient, index: int, text: str) -> None:
    source = client.model.ycells[index]["source"]
    source.insert(len(source), text)


async def test_fork_edit_and_merge(server: DocServer) -> None:
    notebook = Forks(server, "merge.ipynb")
    live = await DocClient.open(notebook.url)
    answer = notebook.create(synchronize=False, title="Try", description="an idea")
    info = {"root_roomid": notebook.room, "synchronize": False, "title": "Try",
            "description": "an idea"}
    assert answer["fork_info"] == info
    assert answer["sessionId"] == notebook.session["sessionId"]
    assert notebook.listed() == {answer["fork_roomid"]: info}
    fork = await notebook.open_fork(answer)
    assert sources(fork) == ["# Title", "x = 1"]
    append(fork, 0, " from the fork")
    append(live, 1, " + 1")  # meanwhile, in the document
    assert await fork.save() == "success"
    assert await live.save() == "success"
    assert sources(live) == ["# Title", "x = 1 + 1"], "a fork's edit stays in the fork"
    status, body = notebook.delete(answer["fork_roomid"], "true")
    assert status == 200, body
    expected = ["# Title from the fork", "x = 1 + 1"]
    await live.wait_for(lambda m: [c["source"] for c in m.get()["cells"]] == expected)
    assert await fork.wait_closed() == 4404
    assert notebook.listed() == {}
    await wait_until(lambda: file_sources(notebook.path) == expected, what="the merge saved")
    fresh = await DocClient.open(notebook.url)
    assert sources(fresh) == expected
    for client in (live, fresh):
        await client.close()


async def test_a_fork_deleted_without_merge_leaves_the_document(server: DocServer) -> None:
    notebook = Forks(server, "drop.ipynb")
    live = await DocClient.open(notebook.url)
    answer = notebook.create()
    assert answer["fork_info"]["synchronize"] is False
    fork = await notebook.open_fork(answer)
    append(fork, 0, " from the fork")
    assert await fork.save() == "success"
    status, _ = notebook.delete(answer["fork_roomid"], "false")
    assert status == 200
    assert await fork.wait_closed() == 4404
    refused = await DocClient.open(f"ws://127.0.0.1:{server.port}/api/collaboration/room/"
                                   f"{answer['fork_roomid']}", sync=False)
    assert await refused.wait_closed() == 4404, "a deleted fork is not an empty room"
    assert await live.save() == "success"
    assert sources(live) == ["# Title", "x = 1"]
    assert file_sources(notebook.path) == ["# Title", "x = 1"]
    assert notebook.listed() == {}
    await live.close()


async def test_a_synchronized_fork_follows_the_document(server: DocServer) -> None:
    notebook = Forks(server, "sync.ipynb")
    live = await DocClient.open(notebook.url)
    answer = notebook.create(synchronize=True)
    fork = await notebook.open_fork(answer)
    append(live, 1, " + 1")
    await fork.wait_for(lambda m: m.get()["cells"][1]["source"] == "x = 1 + 1")
    # while no room holds the fork, the document goes on; the fork catches up when it loads
    await fork.close()
    await wait_until(lambda: f"room {answer['fork_roomid']} unloaded" in server.log(),
                     what="the fork's room unloaded")
    append(live, 1, " + 2")
    assert await live.save() == "success"
    fork = await notebook.open_fork(answer)
    assert sources(fork) == ["# Title", "x = 1 + 1 + 2"]
    append(fork, 0, " (fork)")
    assert await fork.save() == "success"
    status, _ = notebook.delete(answer["fork_roomid"], "true")
    assert status == 200
    expected = ["# Title (fork)", "x = 1 + 1 + 2"]
    await live.wait_for(lambda m: [c["source"] for c in m.get()["cells"]] == expected)
    await wait_until(lambda: file_sources(notebook.path) == expected, what="the merge saved")
    await live.close()


# --- bad requests and permissions ---------------------------------------------------------


def bad_requests(room: str, fork: str, timeline: str) -> list[tuple[str, str, Any, int]]:
    other = "json:notebook:00000000-0000-0000-0000-000000000000"
    unknown = "0" * 32
    undo = "api/collaboration/undo_redo"
    return [
        ("GET", "api/collaboration/timeline/nb.ipynb", None, 400),
        ("GET", "api/collaboration/timeline/nb.ipynb?format=json&type=xml", None, 400),
        ("GET", "api/collaboration/timeline/missing.ipynb?format=json&type=notebook", None, 404),
        ("PUT", f"{undo}/{room}?action=jump&steps=1&forkRoom={timeline}", None, 400),
        ("PUT", f"{undo}/{room}?action=undo&steps=x&forkRoom={timeline}", None, 400),
        ("PUT", f"{undo}/{room}?action=undo&steps=-1&forkRoom={timeline}", None, 400),
        ("PUT", f"{undo}/{room}?action=undo&forkRoom={timeline}", None, 400),
        ("PUT", f"{undo}/{room}?action=undo&steps=1", None, 400),
        ("PUT", f"{undo}/{room}?action=undo&steps=1&forkRoom={unknown}", None, 404),
        ("PUT", f"{undo}/{room}?action=undo&steps=1&forkRoom=not-an-id", None, 404),
        ("PUT", f"{undo}/{other}?action=undo&steps=1&forkRoom={timeline}", None, 404),
        ("PUT", f"{undo}/{room}?action=undo&steps=1&forkRoom={fork}", None, 404),
        ("PUT", f"api/collaboration/fork/{other}", {}, 404),
        ("PUT", "api/collaboration/fork/JupyterLab:globalAwareness", {}, 404),
        ("PUT", f"api/collaboration/fork/{room}", {"synchronize": "yes"}, 400),
        ("PUT", f"api/collaboration/fork/{room}", {"title": 3}, 400),
        ("PUT", f"api/collaboration/fork/{room}", [1], 400),
        ("GET", f"api/collaboration/fork/{other}", None, 404),
        ("DELETE", f"api/collaboration/fork/{unknown}?merge=true", None, 404),
        ("DELETE", f"api/collaboration/fork/{timeline}?merge=false", None, 404),
        ("DELETE", f"api/collaboration/fork/{fork}?merge=maybe", None, 400),
        ("DELETE", f"api/collaboration/fork/{fork}", None, 400),
    ]


async def test_bad_ids_and_parameters(server: DocServer) -> None:
    notebook = Forks(server, "nb.ipynb")
    client = await DocClient.open(notebook.url)
    fork = notebook.create()["fork_roomid"]
    status, line = server.request(
        "GET", "api/collaboration/timeline/nb.ipynb?format=json&type=notebook")
    assert status == 200
    for method, path, body, expected in bad_requests(notebook.room, fork, line["forkRoom"]):
        got, answer = server.request(method, path, body)
        assert got == expected, (method, path, got, answer)
        assert "error" in answer
    stale = await DocClient.open(f"ws://127.0.0.1:{server.port}/api/collaboration/room/{fork}"
                                 f"?sessionId=00000000-0000-0000-0000-000000000000", sync=False)
    assert await stale.wait_closed() == 4409
    assert set(notebook.listed()) == {fork}, "a timeline's copy is not a fork"
    await client.close()


async def test_a_reader_may_move_a_timeline_but_not_restore_or_fork(server: DocServer) -> None:
    def reader(method: str, target: str) -> dict[str, str]:
        return signed(Identity("reader", "read"), SECRET, method, target)

    notebook = Timeline(server, "read.ipynb")
    editor = await notebook.edit()
    timeline = f"api/collaboration/timeline/{notebook.name}?format=json&type=notebook"
    status, line = server.request("GET", timeline, headers=reader("GET", timeline))
    assert status == 200 and len(line["timestamps"]) == 4
    copy = await DocClient.open(notebook.fork_url(line["forkRoom"]),
                                headers=reader("GET", notebook.fork_url(line["forkRoom"])))
    room = f"json:notebook:{notebook.session['fileId']}"
    undo = f"api/collaboration/undo_redo/{room}?forkRoom={line['forkRoom']}&"
    status, _ = server.request("PUT", undo + "action=undo&steps=3", headers=reader("PUT", undo))
    assert status == 200
    await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[0])
    append(copy, 0, " typed by a reader")
    await copy.flush()
    status, _ = server.request("PUT", undo + "action=restore&steps=0",
                               headers=reader("PUT", undo))
    assert status == 403
    status, _ = server.request("PUT", f"api/collaboration/fork/{room}", {},
                               headers=reader("PUT", f"api/collaboration/fork/{room}"))
    assert status == 403
    status, listed = server.request("GET", f"api/collaboration/fork/{room}",
                                   headers=reader("GET", f"api/collaboration/fork/{room}"))
    assert status == 200 and listed == {}
    fork = server.request("PUT", f"api/collaboration/fork/{room}", {})[1]["fork_roomid"]
    for merge in ("true", "false"):
        status, _ = server.request("DELETE", f"api/collaboration/fork/{fork}?merge={merge}",
                                   headers=reader("DELETE", f"api/collaboration/fork/{fork}"))
        assert status == 403
    assert set(server.request("GET", f"api/collaboration/fork/{room}")[1]) == {fork}
    assert copy.denied, "the reader's typing was refused"
    assert await editor.save() == "success"
    assert sources(editor) == ["# Title", notebook.code[3]]
    assert file_sources(notebook.path) == ["# Title", notebook.code[3]]
    for client in (copy, editor):
        await client.close()


async def test_a_users_timeline_opened_in_a_loop_is_one_copy(server: DocServer) -> None:
    """A user has one timeline copy per document: opening the timeline again reuses it (its
    client comes back to now), so that a reader in a loop stores one copy; nobody moves
    another user's copy."""
    def as_user(name: str, method: str, target: str) -> dict[str, str]:
        return signed(Identity(name, "read"), SECRET, method, target)

    notebook = Timeline(server, "loop.ipynb")
    editor = await notebook.edit()
    timeline = f"api/collaboration/timeline/{notebook.name}?format=json&type=notebook"
    status, first = server.request("GET", timeline, headers=as_user("looper", "GET", timeline))
    assert status == 200
    url = notebook.fork_url(first["forkRoom"])
    copy = await DocClient.open(url, headers=as_user("looper", "GET", url))
    room = f"json:notebook:{notebook.session['fileId']}"
    undo = f"api/collaboration/undo_redo/{room}?forkRoom={first['forkRoom']}&"
    status, _ = server.request("PUT", undo + "action=undo&steps=3",
                               headers=as_user("looper", "PUT", undo))
    assert status == 200
    await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[0])
    status, body = server.request("PUT", undo + "action=redo&steps=1",
                                  headers=as_user("someone-else", "PUT", undo))
    assert status == 403 and "another user" in body["error"], (status, body)
    db = sqlite3.connect(server.tmp / "data" / "ydjango.sqlite3")
    try:
        def copies() -> list[tuple[str, str]]:
            return db.execute(
                "SELECT id, owner FROM jupyter_ydjango_fork WHERE kind = 'timeline' AND "
                "document_id = ?", (notebook.session["fileId"].replace("-", ""),)).fetchall()

        for _ in range(30):
            status, again = server.request("GET", timeline,
                                           headers=as_user("looper", "GET", timeline))
            assert status == 200 and again["forkRoom"] == first["forkRoom"]
        assert copies() == [(first["forkRoom"], "looper")]
        # the reused copy shows now again, and its connected client follows
        await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[3])
        status, body = server.request("PUT", undo + "action=redo&steps=1",
                                      headers=as_user("looper", "PUT", undo))
        assert body == {"error": "No more redo operations available"}, "it shows the last point"
        status, other = server.request("GET", timeline,
                                       headers=as_user("someone-else", "GET", timeline))
        assert status == 200 and other["forkRoom"] != first["forkRoom"]
        assert sorted(owner for _, owner in copies()) == ["looper", "someone-else"]
    finally:
        db.close()
    for client in (copy, editor):
        await client.close()


# --- several processes --------------------------------------------------------------------


def fork_sources(state: bytes) -> list[str]:
    """The cells' sources of a fork's stored copy."""
    doc = pycrdt.Doc()
    doc.apply_update(bytes(state))
    return [cell["source"] for cell in YNotebook(doc).get()["cells"]]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """``(environment, query)`` of a database two processes share: SQLite in ``tmp_path``'s
    data directory, or a database of its own on the local PostgreSQL."""
    if request.param == "sqlite":
        def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
            con = sqlite3.connect(tmp_path / "data" / "ydjango.sqlite3")
            try:
                return con.execute(sql.replace("%s", "?"), params).fetchall()
            finally:
                con.close()

        yield {}, query
        return
    user, why = postgres_user()
    if user is None:
        pytest.skip(why)
    db = PgDatabase(user, "ydjango_timeline")
    try:
        yield {"YDJANGO_DATABASE_URL": db.url()}, db.query
    finally:
        db.drop()


@pytest.mark.redis
async def test_timeline_and_forks_across_processes(tmp_path: Path, database: Any) -> None:
    """Two processes on one database and one Redis: each request goes to the process that
    does not serve the clients concerned."""
    if not redis_running():
        pytest.skip("Redis is not running on 127.0.0.1:6379 (start it to run this test)")
    root = tmp_path / "root"
    root.mkdir()
    db_env, query = database
    env = {"YDJANGO_HISTORY_BURST_GAP": str(GAP), "YDJANGO_REDIS_URL": "redis://127.0.0.1:6379/0",
           "YDJANGO_RELAY_HEARTBEAT": "1", **db_env}
    first = DocServer(tmp_path, root, name="first", **env)
    second = DocServer(tmp_path, root, name="second", **env)
    try:
        notebook = Timeline(first, "procs.ipynb")
        editor = await notebook.edit()
        watcher = await DocClient.open(notebook.url)
        on_second = Timeline(second, notebook.name, write=False)
        line = on_second.open()
        assert len(line["timestamps"]) == 4
        await editor.close()
        copy = await DocClient.open(notebook.fork_url(line["forkRoom"]), doc=editor.doc)
        assert on_second.undo_redo("undo", 3, line["forkRoom"])[0] == 200
        await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[0])
        assert on_second.undo_redo("redo", 1, line["forkRoom"])[0] == 200
        await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[1])
        assert sources(watcher) == ["# Title", notebook.code[3]]
        status, body = on_second.undo_redo("restore", 0, line["forkRoom"])
        assert status == 200, body
        await watcher.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[1])
        back = await DocClient.open(notebook.url, doc=copy.doc)
        assert sources(back) == ["# Title", notebook.code[1]]
        await wait_until(lambda: file_sources(notebook.path) == ["# Title", notebook.code[1]],
                         what="the restored point saved")

        forks = Forks(first, notebook.name, write=False)
        answer = forks.create()
        fork = await Forks(second, notebook.name, write=False).open_fork(answer)
        append(fork, 0, " (fork)")
        assert await fork.save() == "success"
        stored = "SELECT state FROM jupyter_ydjango_fork WHERE id = %s"
        await wait_until(lambda: fork_sources(query(stored, (answer["fork_roomid"],))[0][0])[0]
                         == "# Title (fork)", what="the fork's edit stored")
        assert forks.delete(answer["fork_roomid"], "true")[0] == 200
        await watcher.wait_for(lambda m: m.get()["cells"][0]["source"] == "# Title (fork)")
        assert await fork.wait_closed() == 4404
        for client in (watcher, back):
            await client.close()
    finally:
        first.stop()
        second.stop()


# --- the admin ----------------------------------------------------------------------------


class AdminUser:
    """A superuser signed in to the server's Django admin (cookies, CSRF tokens)."""

    def __init__(self, server: DocServer, name: str = "admin") -> None:
        subprocess.run([sys.executable, "-m", "django", "createsuperuser", "--noinput",
                        "--username", name, "--email", f"{name}@example.com"],
                       env={**server.env, "DJANGO_SETTINGS_MODULE": "jupyter_ydjango.settings",
                            "DJANGO_SUPERUSER_PASSWORD": "admin-password"},
                       check=True, capture_output=True)
        self.base = f"http://127.0.0.1:{server.port}/"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.post("admin/login/?next=/admin/", {"username": name, "password": "admin-password"},
                  form_page="admin/login/")

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=30) as response:
            return response.read().decode()

    def post(self, path: str, data: dict[str, str], form_page: str) -> str:
        """Submit a form of ``form_page`` (its CSRF token) to ``path``; the page after it."""
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(form_page))
        assert token is not None
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token[1], **data}).encode()
        with self.opener.open(self.base + path.lstrip("/"), body, timeout=60) as response:
            return response.read().decode()


def changed_by(html: str) -> list[str]:
    """The "Changed by" column of the admin's timeline."""
    cells = re.findall(r'<td class="ydjango-authors">(.*?)</td>', html, re.S)
    return [html_unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells]


async def test_the_admin_shows_the_timeline_and_restores_a_point(server: DocServer) -> None:
    notebook = Timeline(server, "admin.ipynb")
    editor = await notebook.edit()
    admin = AdminUser(server)
    page = f"admin/jupyter_ydjango/document/{notebook.session['fileId']}/change/"
    html = admin.get(page)
    points = re.findall(r'name="at" value="(\d+)"', html)
    line = notebook.open()
    assert [int(at) / 1e6 for at in points] == pytest.approx(line["timestamps"], abs=1e-6)
    assert html.count('value="Restore this point"') == 4
    action = re.search(r'<form method="post" action="([^"]+restore-point/)"', html)
    assert action is not None
    # who changed each point: the file's import, then the anonymous editor's bursts
    assert changed_by(html) == ["\u2014", "Anonymous", "Anonymous", "Anonymous"]
    done = admin.post(html_unescape(action[1]), {"at": points[1]}, form_page=page)
    assert "restored the point of" in done
    await editor.wait_for(lambda m: m.get()["cells"][1]["source"] == notebook.code[1])
    await wait_until(lambda: file_sources(notebook.path) == ["# Title", notebook.code[1]],
                     what="the restored point saved")
    later = notebook.open()
    assert len(later["timestamps"]) == 5, "the restore is a point of its own"
    assert changed_by(admin.get(page))[-1] == "admin", "the restore is the admin's"
    assert later["forkRoom"] in admin.get("admin/jupyter_ydjango/fork/"), "copies are listed"
    await editor.close()


async def test_a_text_file_has_a_timeline(server: DocServer) -> None:
    (server.root / "notes.txt").write_text("one\n")
    kind = {"format": "text", "type": "file"}
    session = server.session("notes.txt", kind)
    editor = await DocClient.open(server.room_url(session), "file")
    source = editor.doc.get("source", type=pycrdt.Text)
    for line in ("two\n", "three\n"):
        source.insert(len(source), line)
        assert await editor.save() == "success"
        await asyncio.sleep(GAP * 2)
    status, line = server.request(
        "GET", "api/collaboration/timeline/notes.txt?format=text&type=file")
    assert status == 200 and len(line["timestamps"]) == 3, line
    copy = await DocClient.open(
        f"ws://127.0.0.1:{server.port}/api/collaboration/room/{line['forkRoom']}"
        f"?sessionId={session['sessionId']}", "file")
    status, _ = server.request("PUT", f"api/collaboration/undo_redo/text:file:"
                                      f"{session['fileId']}?action=undo&steps=1"
                                      f"&forkRoom={line['forkRoom']}")
    assert status == 200
    await copy.wait_for(lambda _: str(copy.doc.get("source", type=pycrdt.Text)) == "one\ntwo\n")
    assert (server.root / "notes.txt").read_text() == "one\ntwo\nthree\n"
    for client in (copy, editor):
        await client.close()
