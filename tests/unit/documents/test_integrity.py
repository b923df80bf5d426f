"""Nothing acknowledged is lost: the log's compaction, failing saves, outside changes.

Real service processes (:class:`~docserver.DocServer`) and frame-level clients
(:mod:`rawclient`), which can send an update without the one it builds on.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import nbformat
import pycrdt
import pytest
from backing_services import PgDatabase, TcpForwarder, postgres_user
from django_service import DocServer
from frame_client import RawClient
from nbformat.v4 import new_code_cell, new_notebook
from notebook_client import DocClient

from jupyter_ydjango.protocol.messages import create_update_message

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


# --- saving never stops -------------------------------------------------------------------


class FailOnce:
    """Wraps a function: the first call after :meth:`arm` raises ``error``."""

    def __init__(self, function: Any, error: BaseException) -> None:
        self.function, self.error = function, error
        self.armed = False
        self.raised = 0

    def arm(self) -> None:
        self.armed = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            self.raised += 1
            raise self.error
        return self.function(*args, **kwargs)


async def loaded_text_room(tmp_path: Path, name: str, content: str) -> tuple[Any, Any, Path]:
    """An in-process room of a text file, saving a moment after each change."""
    from django.core.management import call_command

    from jupyter_ydjango.documents.room import DocumentRoom
    from jupyter_ydjango.formats.builtin import FORMATS
    from jupyter_ydjango.rooms.room import RoomRegistry
    from jupyter_ydjango.store import records

    await asyncio.to_thread(call_command, "migrate", interactive=False, verbosity=0)
    path = tmp_path / name
    path.write_text(content)
    info, _ = await asyncio.to_thread(records.get_or_create_document, f"{tmp_path.name}/{name}",
                                      "text", "file")
    text = FORMATS[("text", "file")]

    async def make() -> DocumentRoom:
        room = DocumentRoom(info.room_name, pycrdt.Doc(), document=info, format=text,
                            root=tmp_path.parent)
        room.save_delay, room.poll_interval = 0.05, 0.05
        return room

    registry = RoomRegistry(unload_delay=600)
    room = await registry.acquire(info.room_name, make)
    return registry, room, path


def append(room: Any, text: str) -> None:
    from jupyter_ydjango.formats.builtin import FORMATS

    fmt = FORMATS[("text", "file")]
    fmt.replace(room.doc, fmt.read(room.doc) + text)


async def test_an_autosave_that_fails_goes_on_saving(tmp_path: Path, monkeypatch: Any) -> None:
    """Each failure the autosave can meet, once: the edit still reaches the file, and so
    does the next one."""
    from concurrent.futures.process import BrokenProcessPool

    from django.db import OperationalError

    from jupyter_ydjango.documents import room as document_module
    from jupyter_ydjango.store import disk, lease, records

    registry, room, path = await loaded_text_room(tmp_path, "autosaved.txt", "start")
    converter = document_module.converter()

    class Converter:  # the process pool that renders files, broken once
        def __init__(self) -> None:
            self.render = FailOnce(converter.render, BrokenProcessPool("a worker died"))

        def __getattr__(self, name: str) -> Any:
            return getattr(converter, name)

    broken = Converter()
    monkeypatch.setattr(document_module, "converter", lambda: broken)
    failures = {
        "the lease check": FailOnce(lease.claim_writer, OperationalError("database is locked")),
        "recording the save": FailOnce(records.record_save, OperationalError("disk I/O error")),
        "writing the file": FailOnce(disk.write_file_atomic, OSError(28, "No space left")),
    }
    monkeypatch.setattr(lease, "claim_writer", failures["the lease check"])
    monkeypatch.setattr(records, "record_save", failures["recording the save"])
    monkeypatch.setattr(disk, "write_file_atomic", failures["writing the file"])
    failures["the converter"] = broken.render
    expected = "start"
    try:
        for what, failure in failures.items():
            room._renew_at = 0.0  # the lease is asked for at the next save
            failure.arm()
            expected += f" / {what}"
            append(room, f" / {what}")
            await wait_until(lambda e=expected: path.read_text() == e, what=f"saved ({what})")
            assert failure.raised == 1, f"{what}: the failure did not happen"
            expected += " / next"
            append(room, " / next")
            await wait_until(lambda e=expected: path.read_text() == e, what=f"next ({what})")
            assert all(not task.done() for task in room._tasks), f"{what}: a task ended"
    finally:
        await registry.close()


async def test_a_change_on_disk_whose_safety_copy_fails_is_loaded_later(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The room has unsaved changes when the file changes on disk: its version is kept as a
    copy beside the file. That copy fails once: the change on disk is not lost (it is
    loaded at the next check, and no save overwrites it meanwhile)."""
    from jupyter_ydjango.store import disk

    registry, room, path = await loaded_text_room(tmp_path, "outside.txt", "base")
    write_copy = FailOnce(disk.write_copy, OSError(13, "Permission denied"))
    monkeypatch.setattr(disk, "write_copy", write_copy)
    try:
        room.save_delay = room.save_max_wait = 600.0  # the room's edit stays unsaved
        await asyncio.sleep(0.3)  # the watcher has seen the file as the room loaded it
        append(room, " + the room's")
        write_copy.arm()
        path.write_text("base + theirs")
        await wait_until(lambda: write_copy.raised == 1, what="the copy attempted")
        room.save_delay = room.save_max_wait = 0.05
        await wait_until(lambda: str(room.doc.get("source", type=pycrdt.Text)) == "base + theirs",
                         what="the change on disk loaded")
        assert path.read_text() == "base + theirs"
        copies = [p for p in tmp_path.iterdir() if p.name != "outside.txt"]
        assert [p.read_text() for p in copies] == ["base + the room's"], copies
        assert room.save_error == ""
    finally:
        await registry.close()


# --- database outages ---------------------------------------------------------------------


class SqliteLock:
    """Another process's write lock on the service's SQLite database, held until released."""

    def __init__(self, path: Path) -> None:
        import sqlite3

        self.connection = sqlite3.connect(path, isolation_level=None, timeout=30)

    def take(self) -> None:
        self.connection.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.connection.execute("COMMIT")


@pytest.mark.parametrize("outage", ["postgresql", "sqlite-locked"])
async def test_typing_through_a_database_outage_loses_nothing(tmp_path: Path,
                                                               outage: str) -> None:
    """The database goes away while someone types, who then leaves; the room's unload delay
    passes; the database comes back. Every keystroke is in the file and in the log, and the
    client was never told that a save failed."""
    root = tmp_path / "root"
    root.mkdir()
    path = root / "outage.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("", id="typed")]), path)
    env: dict[str, str] = {}
    database = forwarder = lock = None
    if outage == "postgresql":
        user, why = postgres_user()
        if user is None:
            pytest.skip(why)
        database = PgDatabase(user, "ydjango_outage")
        forwarder = TcpForwarder("127.0.0.1", 5432)
        env["YDJANGO_DATABASE_URL"] = database.url(port=forwarder.port)
    server = DocServer(tmp_path, root, **env)
    if outage == "sqlite-locked":
        lock = SqliteLock(tmp_path / "data" / "ydjango.sqlite3")
    try:
        session = server.session("outage.ipynb")
        room = f"json:notebook:{session['fileId']}"
        client = await DocClient.open(server.room_url(session))
        typed = ""

        async def type_text(count: int) -> None:
            nonlocal typed
            source = client.model.ycells[0]["source"]
            for _ in range(count):
                char = "abcdefghij"[len(typed) % 10]
                source.insert(len(source), char)
                typed += char
                await asyncio.sleep(0.05)

        def file_holds_all() -> bool:
            return nbformat.read(path, as_version=4).cells[0].source == typed

        await type_text(10)
        await wait_until(file_holds_all, what="saved before the outage")
        if forwarder is not None:
            forwarder.pause()
        else:
            lock.take()
        await type_text(40)

        def told() -> bool:  # the status bar's endpoint says so, the database down
            status, body = server.request("GET", f"api/ydjango/rooms/{session['fileId']}")
            assert status == 200, body
            return body["storeError"] is not None

        await wait_until(told, timeout=30, what="the room's status telling of the outage")
        if lock is not None:  # on this machine's database, the file goes on being saved
            await wait_until(file_holds_all, what="saved during the outage")
        await client.flush()
        await client.close()
        await asyncio.sleep(3.0)  # the unload delay (1 s) passes, twice
        assert f"room {room} unloaded" not in server.log(), "unloaded with changes not stored"
        if forwarder is not None:
            forwarder.resume()
        else:
            lock.release()
        await wait_until(lambda: f"room {room} unloaded" in server.log(), timeout=30,
                         what="the room unloaded once its changes are stored")
        assert file_holds_all()
        status, body = server.request("GET", f"api/ydjango/rooms/{session['fileId']}")
        assert status == 200 and body["storeError"] is None, body
        assert not [m for m in client.raw if m.get("type") == "save"
                    and m.get("status") == "failed"], client.raw
        again = await DocClient.open(server.room_url(session))  # from the log
        assert again.model.get()["cells"][0]["source"] == typed
        await again.close()
    finally:
        server.stop()
        if forwarder is not None:
            forwarder.close()
        if database is not None:
            database.drop()
