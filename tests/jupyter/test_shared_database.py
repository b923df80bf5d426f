"""Several Jupyter servers of one user, one embedded database: each file is one document.

People run ``jupyter lab`` in two project folders at once, and the embedded default keeps one
SQLite database per user (``YDJANGO_DATA_DIR``, in the Jupyter data directory) for every
server. Folders often hold the same relative names. Real Jupyter server processes, with
their data directory shared, and real clients (pycrdt + jupyter_ydoc).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from daphne_servers import PROJECT_DIR, server_env
from jupyter_servers import JupyterServer
from nbformat.v4 import new_code_cell, new_notebook
from notebook_client import DocClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

NAME = "_probe/same.ipynb"


def write_cells(path: Path, sources: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_code_cell(s, id=f"c{n}")
                                       for n, s in enumerate(sources)]), path)


def file_sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells]


def sources(client: DocClient) -> list[str]:
    return [cell["source"] for cell in client.model.get()["cells"]]


def servers_of(tmp: Path, *roots: Path) -> list[JupyterServer]:
    """A Jupyter server per root, all with the data directory ``tmp / "shared-data"``; rooms
    unload a second after their last client leaves."""
    shared = tmp / "shared-data"
    shared.mkdir(exist_ok=True)
    started = []
    try:
        for n, root in enumerate(roots):
            started.append(JupyterServer(tmp / f"server-{n}", root, name=f"server-{n}",
                                         args=("--YDjango.room_unload_delay=1",),
                                         YDJANGO_DATA_DIR=str(shared)))
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started


def open_session(server: JupyterServer, path: str) -> dict[str, Any]:
    status, info = server.session(path)
    assert status in (200, 201), info
    return info


def room_of(session: dict[str, Any]) -> str:
    return f"{session['format']}:{session['type']}:{session['fileId']}"


async def wait_for_log(server: JupyterServer, line: str, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.1)):
        if line in server.log():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not in the log of {server.name} within {timeout} s: {line}")


async def append_and_save(client: DocClient, text: str) -> None:
    source = client.model.ycells[0]["source"]
    source.insert(len(source), text)
    assert await client.save() == "success"


async def test_two_roots_with_the_same_path_keep_their_own_notebooks(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_cells(a / NAME, ["from a"])
    write_cells(b / NAME, ["from b"])
    servers = servers_of(tmp_path, a, b)
    try:
        sessions = [open_session(server, NAME) for server in servers]
        assert sessions[0]["fileId"] != sessions[1]["fileId"]
        clients = [await DocClient.open(server.room_url(session))
                   for server, session in zip(servers, sessions, strict=True)]
        assert [sources(c) for c in clients] == [["from a"], ["from b"]]
        await append_and_save(clients[0], " edited in a")
        await append_and_save(clients[1], " edited in b")
        assert file_sources(a / NAME) == ["from a edited in a"]
        assert file_sources(b / NAME) == ["from b edited in b"]
        for client in clients:
            await client.close()
        # the same again once both rooms are loaded from the history, not from the files
        sessions = [open_session(server, NAME) for server in servers]
        again = [await DocClient.open(server.room_url(session))
                 for server, session in zip(servers, sessions, strict=True)]
        assert [sources(c) for c in again] == [["from a edited in a"], ["from b edited in b"]]
        for client in again:
            await client.close()
        # a room of the other server's file is unknown here (its file id is no secret)
        other = dict(sessions[1])
        async with connect(servers[0].room_url(other)) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 20)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404
        assert file_sources(a / NAME) == ["from a edited in a"]
        assert file_sources(b / NAME) == ["from b edited in b"]
    finally:
        for server in servers:
            server.stop()


async def test_nested_roots_share_the_document_of_a_file_they_both_serve(
        tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    inner = outer / "inner"
    write_cells(inner / "nested.ipynb", ["one cell"])
    servers = servers_of(tmp_path, outer, inner)
    try:
        on_outer = open_session(servers[0], "inner/nested.ipynb")
        client = await DocClient.open(servers[0].room_url(on_outer))
        assert sources(client) == ["one cell"]
        await append_and_save(client, ", edited")
        await client.close()
        # one after the other: each embedded server has rooms of its own, which do not
        # see each other's edits live, and one room at a time writes the file
        await wait_for_log(servers[0], f"room {room_of(on_outer)} unloaded")
        on_inner = open_session(servers[1], "nested.ipynb")
        assert on_outer["fileId"] == on_inner["fileId"]
        client = await DocClient.open(servers[1].room_url(on_inner))
        assert sources(client) == ["one cell, edited"], "one history, nothing imported twice"
        await append_and_save(client, " twice")
        await client.close()
        assert file_sources(inner / "nested.ipynb") == ["one cell, edited twice"]
    finally:
        for server in servers:
            server.stop()


#: Run in a process of its own on a data directory: migrate it to the schema before
#: documents were keyed by location, and add a document of an API path there.
OLD_SCHEMA = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
call_command("migrate", "jupyter_ydjango", "0005_authors", interactive=False, verbosity=0)
apps = MigrationExecutor(connection).loader.project_state(
    ("jupyter_ydjango", "0005_authors")).apps
row = apps.get_model("jupyter_ydjango", "Document").objects.create(path=sys.argv[1])
print(json.dumps(str(row.id)))
"""


async def test_documents_of_the_former_schema_go_to_the_first_root_migrated(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared-data"
    shared.mkdir()
    env = server_env(shared, DJANGO_SETTINGS_MODULE="jupyter_ydjango.settings")
    made = subprocess.run([sys.executable, "-c", OLD_SCHEMA, NAME], env=env, cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=120, check=False)
    assert made.returncode == 0, made.stderr
    old_id = json.loads(made.stdout.strip().splitlines()[-1])
    a, b = tmp_path / "a", tmp_path / "b"
    write_cells(a / NAME, ["from a"])
    write_cells(b / NAME, ["from b"])
    first = servers_of(tmp_path, a)[0]  # migrates the database
    try:
        assert open_session(first, NAME)["fileId"] == old_id
    finally:
        first.stop()
    second = servers_of(tmp_path, b)[0]
    try:
        session = open_session(second, NAME)
        assert session["fileId"] != old_id
        client = await DocClient.open(second.room_url(session))
        assert sources(client) == ["from b"]
        await client.close()
    finally:
        second.stop()
