"""Deleting an open document, in a real Jupyter server with the embedded Django side.

A file deleted through Jupyter's contents API (what JupyterLab's file browser calls) or on
disk by another program stays deleted: its room stops saving, tells its clients, keeps the
content in the database (restorable), and a new file at the same path is a new document.
The clients are pycrdt + jupyter_ydoc (:mod:`docclient`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import pytest
from jupyter_servers import JupyterServer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_client import DocClient

#: The room's file poll in these servers (JupyterServer's default) and the save delay.
POLL = 0.2
SAVE_DELAY = 0.2
#: Long enough for the room to have saved anything it was going to save.
QUIET = 10 * (POLL + SAVE_DELAY)


def write_notebook(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=[new_markdown_cell(f"# {text}", id="md-1"),
                             new_code_cell("x = 1", id="code-1")])
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("deleting")
    root = tmp / "root"
    root.mkdir()
    server = JupyterServer(tmp, root, base_url="/jp/",
                           args=(f"--YDjango.save_delay={SAVE_DELAY}",))
    yield server
    server.stop()


async def open_room(server: JupyterServer, path: str) -> tuple[DocClient, dict[str, Any]]:
    status, info = server.session(path)
    assert status in (200, 201), (status, info)
    return await DocClient.open(server.room_url(info)), info


def append_source(client: DocClient, index: int, text: str) -> None:
    source = client.model.ycells[index]["source"]
    source.insert(len(source), text)


def room_status(server: JupyterServer, file_id: str) -> dict[str, Any]:
    status, room = server.request("GET", f"api/ydjango/rooms/{file_id}")
    assert status == 200, room
    return room


def delete_through_jupyter(server: JupyterServer, path: str) -> None:
    status, body = server.request("DELETE", f"api/contents/{quote(path)}")
    assert status == 204, (status, body)


def cli(server: JupyterServer, *args: str) -> str:
    """``python -m jupyter_ydjango ...`` on the server's database and notebook root."""
    env = {**server.env, "YDJANGO_NOTEBOOK_DIR": str(server.root)}
    proc = subprocess.run([sys.executable, "-m", "jupyter_ydjango", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


async def stays_deleted(client: DocClient, path: Path) -> None:
    """Type into the room, ask it to save: the file is not made again."""
    append_source(client, 1, "  # typed after the deletion")
    await client.flush()
    assert await client.save() == "failed"
    await asyncio.sleep(QUIET)
    assert not path.exists()


@pytest.mark.parametrize("how", ["contents API", "on disk"])
async def test_a_deleted_file_stays_deleted(jupyter: JupyterServer, how: str) -> None:
    name = f"gone {how}.ipynb"
    path = write_notebook(jupyter.root / name, how)
    client, info = await open_room(jupyter, name)
    other, _ = await open_room(jupyter, name)
    try:
        append_source(client, 0, " (edited)")
        assert await client.save() == "success"
        assert not room_status(jupyter, info["fileId"])["deleted"]

        if how == "contents API":
            delete_through_jupyter(jupyter, name)
        else:
            os.remove(path)
        for each in (client, other):  # every client is told
            notice = await each.wait_raw(lambda m: m.get("type") == "file", timeout=10)
            assert notice == {"type": "file", "status": "deleted", "path": name}
        assert room_status(jupyter, info["fileId"])["deleted"] is True
        await stays_deleted(client, path)
        # the room goes on for the people in it
        await other.wait_for(lambda m: "typed after" in str(m.ycells[1]["source"]))
    finally:
        await client.close()
        await other.close()


async def test_deleted_while_no_room_is_loaded(tmp_path: Path) -> None:
    """A file deleted on disk while nobody had it open: a client reconnecting to its room
    (a page left open) is told, and nothing is written."""
    root = tmp_path / "root"
    path = write_notebook(root / "offline.ipynb", "offline")
    server = JupyterServer(tmp_path, root, args=(f"--YDjango.save_delay={SAVE_DELAY}",
                                                 "--YDjango.room_unload_delay=0"))
    try:
        client, info = await open_room(server, "offline.ipynb")
        await client.close()
        await asyncio.sleep(1)  # unloaded
        os.remove(path)
        client = await DocClient.open(server.room_url(info))
        await client.wait_raw(lambda m: m.get("status") == "deleted", timeout=10)
        await stays_deleted(client, path)
        await client.close()
    finally:
        server.stop()


async def test_a_new_file_at_the_path_starts_clean(jupyter: JupyterServer) -> None:
    path = write_notebook(jupyter.root / "again.ipynb", "first")
    client, first = await open_room(jupyter, "again.ipynb")
    append_source(client, 0, " (edited before the deletion)")
    assert await client.save() == "success"
    delete_through_jupyter(jupyter, "again.ipynb")
    await client.wait_raw(lambda m: m.get("status") == "deleted")

    write_notebook(path, "second")
    status, second = jupyter.session("again.ipynb")
    assert status == 201, "a new document"
    assert second["fileId"] != first["fileId"]
    fresh = await DocClient.open(jupyter.room_url(second))
    try:
        assert [str(c["source"]) for c in fresh.model.ycells] == ["# second", "x = 1"]
        append_source(fresh, 1, " + 1")
        assert await fresh.save() == "success"
        assert nbformat.read(path, as_version=4).cells[1].source == "x = 1 + 1"
        # the old room still does not write, and still says so
        assert await client.save() == "failed"
        assert room_status(jupyter, first["fileId"])["deleted"] is True
        assert room_status(jupyter, second["fileId"])["deleted"] is False
    finally:
        await client.close()
        await fresh.close()


async def test_deleting_a_directory(jupyter: JupyterServer) -> None:
    path = write_notebook(jupyter.root / "folder" / "inside.ipynb", "inside")
    client, _ = await open_room(jupyter, "folder/inside.ipynb")
    try:
        delete_through_jupyter(jupyter, "folder")
        await client.wait_raw(lambda m: m.get("status") == "deleted")
        await stays_deleted(client, path)
        assert not path.parent.exists()
    finally:
        await client.close()


async def test_the_last_content_is_restored_from_the_database(jupyter: JupyterServer) -> None:
    name = "restorable.ipynb"
    path = write_notebook(jupyter.root / name, "restorable")
    client, info = await open_room(jupyter, name)
    try:
        append_source(client, 0, " (saved)")
        assert await client.save() == "success"
        delete_through_jupyter(jupyter, name)
        await client.wait_raw(lambda m: m.get("status") == "deleted")
        append_source(client, 1, "  # after the deletion")  # kept in the history too
        await client.flush()
        await asyncio.sleep(0.5)  # the update log is written within ~50 ms

        listed = cli(jupyter, "deleted")
        assert info["fileId"] in listed and name in listed
        assert cli(jupyter, "restore", info["fileId"]).strip() == f"restored to {name}"
        restored = nbformat.read(path, as_version=4)
        assert [c.source for c in restored.cells] == ["# restorable (saved)",
                                                     "x = 1  # after the deletion"]
        # the room saves again, and its clients are told
        await client.wait_raw(lambda m: m.get("status") == "restored", timeout=10)
        assert room_status(jupyter, info["fileId"])["deleted"] is False
        append_source(client, 1, "!")
        assert await client.save() == "success"
        assert nbformat.read(path, as_version=4).cells[1].source.endswith("deletion!")
        assert jupyter.session(name)[1]["fileId"] == info["fileId"]
    finally:
        await client.close()


async def test_restoring_beside_a_new_file(jupyter: JupyterServer) -> None:
    path = write_notebook(jupyter.root / "taken.ipynb", "old")
    client, info = await open_room(jupyter, "taken.ipynb")
    await client.close()
    delete_through_jupyter(jupyter, "taken.ipynb")
    # (a new file made within milliseconds of the deletion, before the room heard of it,
    # could be taken for a change of the deleted one: people take longer than that)
    deadline = time.monotonic() + 10
    while not room_status(jupyter, info["fileId"])["deleted"]:
        assert time.monotonic() < deadline, "the deletion is recorded"
        await asyncio.sleep(0.05)
    write_notebook(path, "new")
    out = cli(jupyter, "restore", info["fileId"]).strip()
    assert out.startswith("restored to taken.restored-") and out.endswith(".ipynb"), out
    restored = jupyter.root / out.removeprefix("restored to ")
    assert nbformat.read(restored, as_version=4).cells[0].source == "# old"
    assert nbformat.read(path, as_version=4).cells[0].source == "# new"


async def test_a_deleted_file_is_not_written_by_a_save_in_flight(
        jupyter: JupyterServer) -> None:
    """Typing goes on while the file is deleted: whatever save was on its way, the file is
    not there afterwards."""
    name = "racing.ipynb"
    path = write_notebook(jupyter.root / name, "racing")
    client, _ = await open_room(jupyter, name)
    try:
        deadline = time.monotonic() + 1.0
        deleted = False
        while time.monotonic() < deadline:
            append_source(client, 1, "#")
            await asyncio.sleep(0.02)
            if not deleted and time.monotonic() > deadline - 0.6:
                delete_through_jupyter(jupyter, name)
                deleted = True
        await client.wait_raw(lambda m: m.get("status") == "deleted")
        await asyncio.sleep(QUIET)
        assert not path.exists()
    finally:
        await client.close()


def test_the_delete_endpoint_is_not_open_to_clients(jupyter: JupyterServer) -> None:
    """Deletions reach the Django side from the Jupyter server's own contents events only:
    its endpoint is not routed to clients."""
    write_notebook(jupyter.root / "kept.ipynb", "kept")
    status, _ = jupyter.request("POST", "api/ydjango/delete", {"path": "kept.ipynb"})
    assert status == 404
    assert jupyter.session("kept.ipynb")[0] == 201
