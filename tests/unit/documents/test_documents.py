"""Documents in rooms, against real ``python -m jupyter_ydjango serve`` processes.

The client is pycrdt + jupyter_ydoc (an independent Yjs implementation and JupyterLab's own
Python schema), speaking to the server the way JupyterLab does: session request, then the
room's websocket.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pycrdt
import pytest
from django_service import DocServer
from jupyter_ydoc import YNotebook
from notebook_client import DocClient
from notebooks import FIXTURES, INVALID_FIXTURE, generated_notebook, plain
from notebooks import without_empty_attachments as as_in_doc
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from jupyter_ydjango.documents.room import DocumentRoom
from jupyter_ydjango.formats.notebook import read_notebook
from jupyter_ydjango.store.update_log import unpack_updates

TEXT = {"format": "text", "type": "file"}


def write_nb(path: Path, n_cells: int = 3) -> nbformat.NotebookNode:
    """Write a small notebook the way Jupyter writes it; returns it as read back."""
    nb = generated_notebook(n_cells)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return read_notebook(path.read_bytes())


async def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        await asyncio.sleep(0.05)


def append_source(client: DocClient, index: int, text: str) -> None:
    """Type ``text`` at the end of a cell, as an editor does (an insert into its YText)."""
    source = client.model.ycells[index]["source"]
    source.insert(len(source), text)


def file_nb(path: Path) -> nbformat.NotebookNode:
    return read_notebook(path.read_bytes())


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocServer]:
    tmp = tmp_path_factory.mktemp("docs")
    root = tmp / "root"
    root.mkdir()
    server = DocServer(tmp, root)
    yield server
    server.stop()


# --- the session API ----------------------------------------------------------------------


def test_session_ids_are_stable_per_file(docs: DocServer) -> None:
    write_nb(docs.root / "stable.ipynb")
    status, first = docs.request("PUT", "api/collaboration/session/stable.ipynb",
                                 {"format": "json", "type": "notebook"})
    assert status == 201
    assert set(first) == {"format", "type", "fileId", "sessionId"}
    status, again = docs.request("PUT", "api/collaboration/session/stable.ipynb",
                                 {"format": "json", "type": "notebook"})
    assert status == 200 and again == first


@pytest.mark.parametrize(("path", "body", "status"), [
    ("missing.ipynb", {"format": "json", "type": "notebook"}, 404),
    ("stable.ipynb", b"{not json", 400),
    ("stable.ipynb", {"format": "xml", "type": "notebook"}, 400),
    ("stable.ipynb", [1, 2], 400),
    ("../outside.ipynb", {"format": "json", "type": "notebook"}, 403),
    ("%2e%2e/outside.ipynb", {"format": "json", "type": "notebook"}, 403),
    ("sub/%2E%2E/%2E%2E/outside.ipynb", {"format": "json", "type": "notebook"}, 403),
    # a leading "/" is the notebook root, as in Jupyter's contents API: no such file there
    ("/etc/hostname", {"format": "json", "type": "notebook"}, 404),
    ("link-out.ipynb", {"format": "json", "type": "notebook"}, 403),
])
def test_session_errors(docs: DocServer, path: str, body: object, status: int) -> None:
    write_nb(docs.root / "stable.ipynb")
    outside = docs.tmp / "outside.ipynb"
    write_nb(outside)
    link = docs.root / "link-out.ipynb"
    if not link.is_symlink():
        link.symlink_to(outside)
    got, reply = docs.request("PUT", f"api/collaboration/session/{path}", body)
    assert got == status, reply
    assert "error" in reply


def test_session_without_identity_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_nb(root / "a.ipynb")
    server = DocServer(tmp_path, root, YDJANGO_ALLOW_ANONYMOUS="0")
    try:
        status, reply = server.request("PUT", "api/collaboration/session/a.ipynb",
                                       {"format": "json", "type": "notebook"})
        assert status == 401, reply
    finally:
        server.stop()


# --- loading ------------------------------------------------------------------------------


def _fixtures() -> list[object]:
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{FIXTURES} is absent"))]
    return [pytest.param(p, id=p.name) for p in sorted(FIXTURES.glob("*.ipynb"))]


@pytest.mark.parametrize("fixture", _fixtures())
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
async def test_fixture_notebooks_read_as_nbformat_reads_them(docs: DocServer,
                                                             fixture: Path) -> None:
    name = "fixture-" + fixture.name
    shutil.copy(fixture, docs.root / name)
    if fixture.name == INVALID_FIXTURE:
        # opened as Jupyter opens it, its schema errors logged as warnings
        client = await docs.open(name)
        assert len(client.model.ycells) == len(read_notebook(fixture.read_bytes()).cells)
        warning = docs.log().split(f"{name} does not follow its nbformat schema")[1]
        assert "'source' is a required property" in warning.splitlines()[0]
        await client.close()
        return
    expected = as_in_doc(read_notebook(fixture.read_bytes()))
    client = await docs.open(name)
    got = client.model.get()
    # every cell in the document has a source, for the frontend's editor
    assert plain(got["cells"]) == [{"source": "", **cell} for cell in plain(expected["cells"])]
    assert plain(got["metadata"]) == plain(expected["metadata"])
    assert (got["nbformat"], got["nbformat_minor"]) == (expected.nbformat,
                                                        expected.nbformat_minor)
    await client.close()


async def test_unknown_room_and_stale_session(docs: DocServer) -> None:
    write_nb(docs.root / "session.ipynb")
    session = docs.session("session.ipynb")
    stale = await DocClient.open(docs.room_url(session, session_id="0" * 32), sync=False)
    assert await stale.wait_closed() == 4409
    bogus = dict(session, fileId="00000000-0000-0000-0000-000000000000")
    unknown = await DocClient.open(docs.room_url(bogus), sync=False)
    assert await unknown.wait_closed() == 4404
    wrong_type = dict(session, format="text", type="file")
    mismatched = await DocClient.open(docs.room_url(wrong_type), sync=False)
    assert await mismatched.wait_closed() == 4404
    fine = await docs.open("session.ipynb")
    assert len(fine.model.ycells) == 3
    await fine.close()


def room_loaded(docs: DocServer, session: dict) -> bool:
    status, body = docs.request("GET", f"api/ydjango/rooms/{session['fileId']}")
    assert status == 200, body
    return body["loaded"]


def swap_for_link_out(docs: DocServer, name: str) -> tuple[Path, bytes]:
    """Replace ``name`` in the root by a link to a notebook outside it (one a room could read
    and load, so that a read through the link would show); the outside file and its bytes."""
    outside = docs.tmp / f"outside-{name}"
    write_nb(outside, 7)
    target = docs.root / name
    target.unlink()
    target.symlink_to(outside)
    return outside, outside.read_bytes()


def assert_nothing_outside_touched(docs: DocServer, outside: Path, before: bytes) -> None:
    assert outside.read_bytes() == before
    assert sorted(p.name for p in docs.tmp.iterdir() if p.name.startswith(outside.stem)) == [
        outside.name]  # no copy was made beside it
    assert (docs.root / outside.name.removeprefix("outside-")).is_symlink()  # nor over the link


async def test_symlink_swapped_out_of_the_root_before_the_room_loads(docs: DocServer) -> None:
    write_nb(docs.root / "swapped-cold.ipynb")
    session = docs.session("swapped-cold.ipynb")
    # the session request loaded the room ahead of its client; nobody came: it is unloaded
    await wait_until(lambda: unloaded(docs, session["fileId"]) == 1, what="the room unloaded")
    assert not room_loaded(docs, session)
    outside, before = swap_for_link_out(docs, "swapped-cold.ipynb")
    client = await DocClient.open(docs.room_url(session), sync=False)
    assert await client.wait_closed() == 4403
    assert_nothing_outside_touched(docs, outside, before)


def _told_gone(client: DocClient) -> bool:
    return any(m.get("type") == "file" and m.get("status") == "deleted" for m in client.raw)


async def test_symlink_swapped_out_of_the_root_while_preloaded(docs: DocServer) -> None:
    """The swap lands between the session request (which loads the room) and the websocket:
    the client is refused, or joins and is told the file is gone; either way the room never
    reads the file outside."""
    write_nb(docs.root / "swapped-preloaded.ipynb")
    session = docs.session("swapped-preloaded.ipynb")
    await wait_until(lambda: room_loaded(docs, session), what="the room preloaded")
    outside, before = swap_for_link_out(docs, "swapped-preloaded.ipynb")
    client = await DocClient.open(docs.room_url(session), sync=False)
    await wait_until(lambda: client.close_code == 4403 or _told_gone(client),
                     what="a refusal or the notice that the file is gone")
    if client.close_code is None:
        assert len(client.model.ycells) == 3  # the room's own notebook, not the one outside
        await client.close()
    assert_nothing_outside_touched(docs, outside, before)


async def test_symlink_swapped_out_of_the_root_while_open(docs: DocServer) -> None:
    path = docs.root / "swapped-open.ipynb"
    write_nb(path)
    client = await docs.open("swapped-open.ipynb")
    outside, before = swap_for_link_out(docs, "swapped-open.ipynb")
    await wait_until(lambda: _told_gone(client), what="the notice that the file is gone")
    append_source(client, 0, " # typed after the swap")
    assert await client.save() == "failed"
    await asyncio.sleep(1)  # a few polls of the watcher and an autosave's delay
    assert len(client.model.ycells) == 3  # the outside notebook (7 cells) was never loaded
    assert_nothing_outside_touched(docs, outside, before)
    assert "replaced by a link out of the notebook root" in docs.log()
    await client.close()


# --- saving -------------------------------------------------------------------------------


async def test_edits_are_saved_after_the_delay_keeping_outputs(docs: DocServer) -> None:
    path = docs.root / "save.ipynb"
    original = write_nb(path, 12)
    mode = 0o640
    os.chmod(path, mode)
    client = await docs.open("save.ipynb")
    append_source(client, 0, "\nadded line")
    await wait_until(lambda: "added line" in path.read_text(), what="the save")
    saved = file_nb(path)
    assert saved.cells[0].source.endswith("\nadded line")
    assert [c.get("outputs") for c in saved.cells] == [c.get("outputs") for c in original.cells]
    assert [c.get("execution_count") for c in saved.cells] == [
        c.get("execution_count") for c in original.cells]
    assert "execution_state" not in path.read_text()
    assert path.read_text().endswith("}\n") and '\n "cells": [' in path.read_text()
    assert os.stat(path).st_mode & 0o777 == mode
    assert not [p for p in docs.root.iterdir() if p.name.startswith(".save.ipynb.")]
    await client.close()


async def test_unchanged_notebook_keeps_its_bytes(docs: DocServer) -> None:
    path = docs.root / "bytes.ipynb"
    nb = generated_notebook(30)
    text = nbformat.writes(as_in_doc(nb)) + "\n"
    path.write_text(text, encoding="utf-8")
    client = await docs.open("bytes.ipynb")
    assert await client.save() == "success"  # the file holds the document: nothing to write
    assert path.read_text(encoding="utf-8") == text
    await client.close()


async def test_save_request_is_answered(docs: DocServer) -> None:
    path = docs.root / "explicit.ipynb"
    write_nb(path)
    client = await docs.open("explicit.ipynb")
    append_source(client, 1, " # explicit")
    assert await client.save() == "success"
    assert "# explicit" in path.read_text()
    mtime = path.stat().st_mtime_ns
    assert await client.save() == "success"  # saved already: answered, not written again
    assert path.stat().st_mtime_ns == mtime
    await client.close()


async def test_save_answers_success_whenever_the_file_holds_the_document(
        docs: DocServer) -> None:
    """The three saves people make by habit: of an unedited notebook, right after an edit,
    and after the autosave wrote the edit. Each is answered "success" (the stock frontend
    shows an error dialog for anything else)."""
    path = docs.root / "habit.ipynb"
    write_nb(path)
    before = path.read_bytes()
    client = await docs.open("habit.ipynb")
    assert await client.save() == "success"  # unedited
    assert path.read_bytes() == before
    append_source(client, 0, " # edited")
    assert await client.save() == "success"  # just edited: written now
    assert file_nb(path).cells[0].source.endswith(" # edited")
    append_source(client, 0, " # again")
    await wait_until(lambda: " # again" in path.read_text(), what="the autosave")
    written = path.stat().st_mtime_ns
    assert await client.save() == "success"  # after the autosave: nothing left to write
    assert path.stat().st_mtime_ns == written
    await client.close()


async def test_invalid_document_is_not_written(docs: DocServer) -> None:
    path = docs.root / "invalid-edit.ipynb"
    write_nb(path)
    before = path.read_bytes()
    client = await docs.open("invalid-edit.ipynb")
    client.model.ycells[0]["cell_type"] = "bogus"
    failure = await client.wait_raw(lambda m: m.get("status") == "failed")
    assert "invalid" in failure["error"]
    assert await client.save() == "failed"
    assert path.read_bytes() == before
    status, room = docs.request("GET", f"api/ydjango/rooms/{docs.session(path.name)['fileId']}")
    assert status == 200 and "invalid" in room["saveError"]
    client.model.ycells[0]["cell_type"] = "markdown"
    assert await client.save() == "success"
    assert file_nb(path).cells[0].cell_type == "markdown"
    await client.close()


async def test_text_files(docs: DocServer) -> None:
    path = docs.root / "script.py"
    path.write_text("print('héllo')\n", encoding="utf-8")
    client = await docs.open("script.py", TEXT)
    assert client.model.get() == "print('héllo')\n"
    client.model._ysource += "x = '😀'\n"
    await wait_until(lambda: "😀" in path.read_text(encoding="utf-8"), what="the save")
    assert path.read_text(encoding="utf-8") == "print('héllo')\nx = '😀'\n"
    await client.close()


# --- changes on disk ----------------------------------------------------------------------


async def test_change_on_disk_is_loaded_into_the_room(docs: DocServer) -> None:
    path = docs.root / "external.ipynb"
    nb = write_nb(path, 4)
    client = await docs.open("external.ipynb")
    other = await docs.open("external.ipynb")
    nb.cells.append(nbformat.v4.new_markdown_cell("from disk", id="disk-cell"))
    nb.cells[0].source = "changed on disk"
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    for c in (client, other):
        await c.wait_for(lambda m: len(m.ycells) == 5)
        got = c.model.get()
        assert got["cells"][0]["source"] == "changed on disk"
        assert got["cells"][4]["source"] == "from disk"
    assert not list(docs.root.glob("external.unsaved-*"))
    await client.close()
    await other.close()


async def test_unsaved_room_version_is_kept_when_the_file_changes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = root / "conflict.ipynb"
    nb = write_nb(path, 4)
    server = DocServer(tmp_path, root, YDJANGO_SAVE_DELAY="60", YDJANGO_SAVE_MAX_WAIT="120")
    try:
        client = await server.open("conflict.ipynb")
        file_id = server.session("conflict.ipynb")["fileId"]
        append_source(client, 1, "\n# room edit")
        await client.flush()
        await wait_until(lambda: server.request("GET", f"api/ydjango/rooms/{file_id}")[1]
                         .get("unsaved"), what="the room edit in the room")
        nb.cells[2].source = "# disk edit"
        path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
        await client.wait_for(lambda m: m.get()["cells"][2]["source"] == "# disk edit")
        copies = await wait_until(lambda: list(root.glob("conflict.unsaved-*.ipynb")))
        kept = file_nb(copies[0])
        assert kept.cells[1].source.endswith("# room edit")
        assert file_nb(path).cells[2].source == "# disk edit"
    finally:
        server.stop()


async def test_last_written_is_known_or_absent(docs: DocServer) -> None:
    """The status API says when the file was last written and by whom, only when a room
    knows: nothing for a file imported and never written since, ``room`` after a save,
    ``outside`` (at the file's mtime) after a change made by another program."""
    path = docs.root / "written.ipynb"
    write_nb(path)
    client = await docs.open("written.ipynb")
    file_id = docs.session(path.name)["fileId"]

    def room() -> dict:
        status, body = docs.request("GET", f"api/ydjango/rooms/{file_id}")
        assert status == 200
        return body

    assert (room()["writtenAt"], room()["writtenBy"], room()["lastSaved"]) == (None, None, None)
    append_source(client, 0, " # saved")
    assert await client.save() == "success"
    saved = room()
    assert saved["writtenBy"] == "room" and saved["writtenAt"] == saved["lastSaved"]
    changed = generated_notebook(2)
    path.write_text(nbformat.writes(changed) + "\n", encoding="utf-8")
    mtime = path.stat().st_mtime
    await wait_until(lambda: room()["writtenBy"] == "outside", what="the change on disk")
    written = datetime.fromisoformat(room()["writtenAt"]).timestamp()
    assert abs(written - mtime) < 0.01
    assert room()["lastSaved"] == saved["lastSaved"]
    await client.close()


async def test_unreadable_change_on_disk_is_kept_and_the_room_wins(docs: DocServer) -> None:
    path = docs.root / "garbage.ipynb"
    write_nb(path)
    client = await docs.open("garbage.ipynb")
    path.write_text("{ this is not json", encoding="utf-8")
    await client.wait_raw(lambda m: m.get("status") == "failed" and "unreadable" in m["error"])
    copies = await wait_until(lambda: list(docs.root.glob("garbage.unreadable-*.ipynb")))
    assert copies[0].read_text() == "{ this is not json"
    await wait_until(lambda: path.read_text().startswith("{\n"), what="the room's version back")
    assert len(file_nb(path).cells) == 3
    await client.close()


# --- history in the database --------------------------------------------------------------


def db_rows(server: DocServer, file_id: str) -> dict[str, tuple[int, int]]:
    """``{table: (rows, bytes)}`` of a document's history in the test server's SQLite."""
    con = sqlite3.connect(server.tmp / "data" / "ydjango.sqlite3")
    try:
        fid = file_id.replace("-", "")
        out = {}
        for table, column in (("update", "data"), ("snapshot", "state")):
            out[table] = con.execute(
                f'SELECT COUNT(*), COALESCE(SUM(LENGTH({column})), 0) '
                f'FROM jupyter_ydjango_{table} WHERE document_id = ?', (fid,)
            ).fetchone()
        return out
    finally:
        con.close()


def logged_notebook(server: DocServer, file_id: str) -> dict:
    """The notebook as the test server's SQLite holds it: snapshots, then the update log."""
    con = sqlite3.connect(server.tmp / "data" / "ydjango.sqlite3")
    try:
        fid = file_id.replace("-", "")
        doc = pycrdt.Doc()
        for (state,) in con.execute("SELECT state FROM jupyter_ydjango_snapshot "
                                    "WHERE document_id = ? ORDER BY id", (fid,)):
            doc.apply_update(bytes(state))
        for (data,) in con.execute("SELECT data FROM jupyter_ydjango_update "
                                   "WHERE document_id = ? ORDER BY id", (fid,)):
            for update in unpack_updates(bytes(data)):
                doc.apply_update(update)
        return YNotebook(doc).get()
    finally:
        con.close()


def unloaded(server: DocServer, file_id: str) -> int:
    """How many times the server unloaded the room of a notebook."""
    return server.log().count(f"room json:notebook:{file_id} unloaded")


async def test_killed_server_loses_no_update(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = root / "crash.ipynb"
    write_nb(path, 5)
    # a long save delay: the file is not saved before the kill, only the log has the edits
    server = DocServer(tmp_path, root, YDJANGO_SAVE_DELAY="60", YDJANGO_SAVE_MAX_WAIT="120")
    try:
        client = await server.open("crash.ipynb")
        file_id = server.session("crash.ipynb")["fileId"]
        for i in range(20):
            append_source(client, 0, f" k{i}")
            await asyncio.sleep(0.01)
        await client.flush()
        expected = client.model.get()["cells"][0]["source"]
        await wait_until(lambda: logged_notebook(server, file_id)["cells"][0]["source"]
                         == expected, what="the edits in the log")
        server.kill()
        assert "k19" not in path.read_text(), "saved before the kill: the test proves nothing"
        server.env["YDJANGO_SAVE_DELAY"] = "0.2"  # the restarted server saves soon
        server.start()
        again = await server.open("crash.ipynb")
        assert again.model.get()["cells"][0]["source"] == expected
        assert len(again.model.ycells) == 5
        # and the file catches up without any new edit
        await wait_until(lambda: "k19" in path.read_text(), what="the save after restart")
        await again.close()
    finally:
        server.stop()


async def test_restart_does_not_duplicate_cells_for_old_clients(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_nb(root / "dup.ipynb", 6)
    server = DocServer(tmp_path, root)
    try:
        old = await server.open("dup.ipynb")
        session = server.session("dup.ipynb")
        server.stop()
        server.start()
        # the old client keeps its state and reconnects with the same session, as JupyterLab
        # does; the history is the same, so nothing doubles
        rejoin = await DocClient.open(server.room_url(session))
        update = old.doc.get_update()
        rejoin.doc.apply_update(update)
        await rejoin.save()  # answered once the server handled the update
        fresh = await server.open("dup.ipynb")
        assert len(fresh.model.ycells) == 6
        assert len(rejoin.model.ycells) == 6
        await rejoin.close()
        await fresh.close()
    finally:
        server.stop()


async def test_log_is_compacted(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    write_nb(root / "compact.ipynb", 10)
    server = DocServer(tmp_path, root, YDJANGO_COMPACT_AFTER="50", YDJANGO_COMPACT_IDLE="1")
    try:
        client = await server.open("compact.ipynb")
        file_id = server.session("compact.ipynb")["fileId"]
        for i in range(300):
            append_source(client, i % 10, "x")
            await client.flush() if i % 10 == 0 else None
            await asyncio.sleep(0.005)
        await client.flush()
        expected = client.model.get()
        rows = await wait_until(lambda: (r := db_rows(server, file_id))["update"][0] == 0 and r,
                                timeout=15, what="idle compaction")
        assert rows["snapshot"][0] >= 2, "the import, then the edits folded into snapshots"
        await client.close()
        server.stop()
        server.start()
        again = await server.open("compact.ipynb")
        assert again.model.get() == expected
        await again.close()
    finally:
        server.stop()


async def test_keystrokes_are_logged_in_batches(docs: DocServer) -> None:
    write_nb(docs.root / "typing.ipynb", 3)
    client = await docs.open("typing.ipynb")
    file_id = docs.session("typing.ipynb")["fileId"]
    before = db_rows(docs, file_id)
    assert before["update"] == (0, 0) and before["snapshot"][0] == 1
    for i in range(100):
        append_source(client, 2, "abcdefghij"[i % 10])
        await asyncio.sleep(0.002)
    await client.flush()
    expected = client.model.get()
    rows = await wait_until(lambda: (r := db_rows(docs, file_id))["update"][0] and r)
    assert 1 <= rows["update"][0] <= 100
    assert rows["snapshot"][0] == 1, "the file was imported once"
    unloads = unloaded(docs, file_id)
    await client.close()
    # the room unloads (after 1 s), then loads from the log alone
    await wait_until(lambda: unloaded(docs, file_id) > unloads, what="the room unloaded")
    again = await docs.open("typing.ipynb")
    assert again.model.get() == expected
    await again.close()


async def test_simultaneous_first_opens_import_once(tmp_path: Path) -> None:
    """Two processes on one database open a new notebook at the same moment."""
    root = tmp_path / "root"
    root.mkdir()
    write_nb(root / "race.ipynb", 8)
    first = DocServer(tmp_path, root, name="first")
    second = DocServer(tmp_path, root, name="second")
    try:
        session = first.session("race.ipynb")
        clients = await asyncio.gather(*(
            DocClient.open(server.room_url(session)) for server in (first, second) * 3
        ))
        assert all(len(c.model.ycells) == 8 for c in clients)
        rows = db_rows(first, session["fileId"])
        assert rows["snapshot"][0] == 1, "imported exactly once"
        # a client holding items from both processes still sees each cell once
        merged = clients[0]
        merged.doc.apply_update(clients[1].doc.get_update())
        assert len(merged.model.ycells) == 8
        for c in clients:
            await c.close()
    finally:
        first.stop()
        second.stop()


async def test_clean_shutdown_saves_pending_changes(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    path = root / "shutdown.ipynb"
    write_nb(path, 3)
    server = DocServer(tmp_path, root, YDJANGO_SAVE_DELAY="60", YDJANGO_SAVE_MAX_WAIT="120")
    try:
        client = await server.open("shutdown.ipynb")
        file_id = server.session("shutdown.ipynb")["fileId"]
        append_source(client, 0, " before shutdown")
        await client.flush()
        await wait_until(lambda: "before shutdown" in
                         logged_notebook(server, file_id)["cells"][0]["source"],
                         what="the edit in the log")  # the server has it
        assert "before shutdown" not in path.read_text()
        server.stop()  # SIGTERM
        assert "before shutdown" in file_nb(path).cells[0].source
        assert server.server.proc.returncode == 0, server.log()[-2000:]
    finally:
        server.stop()


async def test_state_hash_follows_the_file_as_jupyter_hashes_it(docs: DocServer) -> None:
    """JupyterLab compares ``state.hash`` with the contents manager's hash before saving."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    manager = FileContentsManager(root_dir=str(docs.root))

    def jupyter_hash(name: str) -> str:
        return manager.get(name, content=False, require_hash=True)["hash"]

    write_nb(docs.root / "hash.ipynb")
    client = await docs.open("hash.ipynb")
    assert client.model.hash == jupyter_hash("hash.ipynb")
    append_source(client, 0, " changed")
    assert await client.save() == "success"
    await client.wait_for(lambda m: m.hash == jupyter_hash("hash.ipynb"))
    assert client.model.dirty is False
    await client.close()


async def test_the_writer_lease_is_held_without_a_write_every_poll(docs: DocServer) -> None:
    """A room renews its lease to write the file once half of it has passed, not at every
    poll of the file, and never lets it lapse while it is loaded."""
    path = docs.root / "lease.ipynb"
    write_nb(path)
    client = await docs.open("lease.ipynb")
    file_id = docs.session(path.name)["fileId"]
    db = sqlite3.connect(docs.tmp / "data" / "ydjango.sqlite3")
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 4.0  # 20 polls of the file (0.2 s), lease 3 s
        while time.monotonic() < deadline:
            ((writer, until),) = db.execute(
                "SELECT writer, writer_until FROM jupyter_ydjango_document WHERE id = ?",
                (file_id.replace("-", ""),)).fetchall()
            held_until = datetime.fromisoformat(until)  # Django keeps UTC
            if held_until.tzinfo is None:
                held_until = held_until.replace(tzinfo=timezone.utc)
            assert writer and held_until > datetime.now(timezone.utc), "the lease lapsed"
            if not seen or seen[-1] != until:
                seen.append(until)
            await asyncio.sleep(0.05)
    finally:
        db.close()
        await client.close()
    assert 2 <= len(seen) <= 4, f"renewed {len(seen) - 1} times in 4 s: {seen}"


async def test_a_session_request_loads_the_room_ahead_of_its_client(docs: DocServer) -> None:
    """The room starts loading at the session request: the client that opens the websocket
    next joins a room loading or loaded. Nobody joining, it is unloaded after the idle
    delay; a file that cannot be loaded is refused to the client, as without the preload."""
    write_nb(docs.root / "ahead.ipynb", 4)
    file_id = docs.session("ahead.ipynb")["fileId"]

    def room() -> dict:
        status, body = docs.request("GET", f"api/ydjango/rooms/{file_id}")
        assert status == 200
        return body

    await wait_until(lambda: room()["loaded"], what="the room loaded without a client")
    assert room()["connections"] == 0
    client = await docs.open("ahead.ipynb")
    try:
        assert len(client.model.ycells) == 4
    finally:
        await client.close()
    unloads = unloaded(docs, file_id)
    docs.session("ahead.ipynb")  # the room is loaded: nothing more to do
    await wait_until(lambda: unloaded(docs, file_id) > unloads, what="the room unloaded")
    assert not room()["loaded"]

    (docs.root / "broken.ipynb").write_text("{not a notebook", encoding="utf-8")
    info = docs.session("broken.ipynb")
    async with connect(docs.room_url(info)) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4422  # the load's own error, as without the preload


async def test_an_import_lets_an_edit_elsewhere_through_between_two_of_its_updates() -> None:
    """An edit in another room takes a dozen passes of the event loop from its sender to its
    receivers; an import applying its updates lets it finish between two of them, rather than
    one step per update."""
    applied: list[bytes] = []
    room = SimpleNamespace(apply_update=lambda update, origin: applied.append(update),
                           import_yield_passes=DocumentRoom.import_yield_passes)
    steps_done_at: list[int] = []

    async def edit_elsewhere() -> None:
        for _ in range(12):  # websocket, bridge, consumer, room, each peer's sender, ...
            await asyncio.sleep(0)
        steps_done_at.append(len(applied))

    async def import_() -> None:
        await asyncio.sleep(0)  # the edit is under way when the import starts
        await DocumentRoom._apply_import(room, [b"1", b"2", b"3"])

    await asyncio.gather(edit_elsewhere(), import_())
    assert applied == [b"1", b"2", b"3"]
    assert steps_done_at == [1], "the edit waited for more than one of the import's updates"


def test_a_file_larger_than_rooms_open_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """The session request of a file over ``YDJANGO_MAX_FILE_SIZE`` is answered 413, saying
    why, and nothing of it is loaded; a smaller file opens."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.txt").write_text("x" * 5000)
    (root / "small.txt").write_text("x" * 100)
    server = DocServer(tmp_path, root, YDJANGO_MAX_FILE_SIZE="4096")
    try:
        text = {"format": "text", "type": "file"}
        status, body = server.request("PUT", "api/collaboration/session/big.txt", text)
        assert status == 413 and "YDJANGO_MAX_FILE_SIZE" in body["error"], (status, body)
        assert "big.txt" in body["error"]
        assert server.request("PUT", "api/collaboration/session/small.txt", text)[0] == 201
        db = sqlite3.connect(tmp_path / "data" / "ydjango.sqlite3")
        try:
            paths = [row[0] for row in db.execute("SELECT path FROM jupyter_ydjango_document")]
        finally:
            db.close()
        assert not any(path.endswith("big.txt") for path in paths), paths
    finally:
        server.stop()
