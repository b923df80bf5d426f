"""Yjs client ids are kept as sent: 32-bit (node yjs) and 53-bit (pycrdt) clients converge.

Real ``serve`` processes, real clients of both kinds in one room: pycrdt documents with their
default random 53-bit client ids (:class:`docclient.DocClient`, with jupyter_ydoc's notebook
model) and node ``yjs`` + ``y-websocket`` clients with 32-bit ids, editing the notebook through
JupyterLab's own ``@jupyter/ydoc`` model (``driver.mjs``). An engine that narrows client ids
(as y-py 0.6 did) stores a 53-bit client's characters under a second identity, and these tests
see duplicated or diverging text.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import nbformat
import pycrdt
import pytest
from django_service import DocServer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_client import DocClient
from yjs_client import NodeDriver, YClient

from jupyter_ydjango.protocol.engines import decode_state_vector, update_client_ids
from jupyter_ydjango.store.update_log import unpack_updates

pytestmark = [pytest.mark.node, pytest.mark.timeout(120)]


def write(path: Path, cells: list[Any]) -> None:
    nbformat.write(new_notebook(cells=cells), path)


def sources(model: Any) -> list[str]:
    """The cells' sources as a jupyter_ydoc model or a ``@jupyter/ydoc`` JSON reads them."""
    cells = model["cells"] if isinstance(model, dict) else model.get()["cells"]
    return ["".join(cell["source"]) for cell in cells]


async def wait_equal(read: Any, want: Any, timeout: float = 15) -> Any:
    """Poll ``await read()`` until it equals ``want``; its last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await read()
        if got == want or loop.time() > deadline:
            return got
        await asyncio.sleep(0.05)


@pytest.fixture
def server(tmp_path: Path) -> Any:
    root = tmp_path / "root"
    root.mkdir()
    srv = DocServer(tmp_path, root)
    yield srv
    srv.stop()


async def node_notebook(driver: NodeDriver, server: DocServer, path: str) -> YClient:
    session = server.session(path)
    room = f"{session['format']}:{session['type']}:{session['fileId']}"
    return await driver.connect(f"ws://127.0.0.1:{server.port}/api/collaboration/room", room,
                                params={"sessionId": session["sessionId"]}, notebook=True)


def assert_wide(client: DocClient) -> None:
    assert client.doc.client_id >= 1 << 32, "pycrdt clients must use their default 53-bit ids"


async def test_concurrent_edits_of_one_cell_converge(server: DocServer,
                                                     ydriver: NodeDriver) -> None:
    """Both kinds type into the same cell at the same moment, several rounds: every reader
    (pycrdt + jupyter_ydoc, node ``@jupyter/ydoc``, the saved file) ends with one text holding
    every character once."""
    write(server.root / "nb.ipynb", [new_code_cell("", id="c1"), new_markdown_cell("# m")])
    py = await server.open("nb.ipynb")
    assert_wide(py)
    node = await node_notebook(ydriver, server, "nb.ipynb")
    assert node.client_id < 1 << 32
    for round_ in range(5):
        ycell = py.model.ycells[0]["source"]
        with py.doc.transaction():
            ycell.insert(0, f"p{round_};")
        await node.nb_insert(0, 0, f"n{round_};")
    want_len = sum(len(f"p{i};n{i};") for i in range(5))

    async def texts() -> tuple[str, str]:
        return sources(py.model)[0], sources(await node.nb_json())[0]

    py_text, node_text = await texts()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while (py_text != node_text or len(py_text) != want_len) and loop.time() < deadline:
        await asyncio.sleep(0.05)
        py_text, node_text = await texts()
    assert py_text == node_text, (py_text, node_text)
    assert len(py_text) == want_len
    for i in range(5):
        assert py_text.count(f"p{i};") == 1 and py_text.count(f"n{i};") == 1, py_text
    assert await py.save() in ("success", "skipped")
    assert sources(nbformat.read(server.root / "nb.ipynb", 4))[0] == py_text
    await py.close()


async def six_clients_converge(urls: list[str], ydriver: NodeDriver, room: str) -> None:
    """Three pycrdt and three node clients, spread over ``urls``, on one plain ``ws/<room>``,
    each insert five times at once without waiting: all six end with the same 30 inserts,
    each once."""
    from websockets.asyncio.client import connect

    nodes = [await ydriver.connect(urls[k % len(urls)], room) for k in range(3)]
    pys = []
    for k in range(3):
        ws = await connect(f"{urls[(k + 1) % len(urls)]}/{room}", max_size=None)
        client = DocClient(ws, "file")
        await ws.send(pycrdt.create_sync_message(client.doc))
        await client.wait_synced()
        assert_wide(client)
        pys.append(client)
    texts = [client.doc.get("t", type=pycrdt.Text) for client in pys]
    for i in range(5):
        for k, text in enumerate(texts):
            with pys[k].doc.transaction():
                text.insert(0, f"<p{k}.{i}>")
        for k, node in enumerate(nodes):
            await node.insert(0, f"<n{k}.{i}>")
    total = sum(len(f"<p{k}.{i}>") + len(f"<n{k}.{i}>") for k in range(3) for i in range(5))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while loop.time() < deadline:
        values = [str(text) for text in texts] + [await node.text() for node in nodes]
        if len(set(values)) == 1 and len(values[0]) == total:
            break
        await asyncio.sleep(0.05)
    assert len(set(values)) == 1, values
    assert len(values[0]) == total
    for k in range(3):
        for i in range(5):
            assert values[0].count(f"<p{k}.{i}>") == 1 and values[0].count(f"<n{k}.{i}>") == 1
    for client in pys:
        await client.close()


async def test_six_clients_five_concurrent_inserts_converge(server: DocServer,
                                                            ydriver: NodeDriver) -> None:
    """One process: see :func:`six_clients_converge`."""
    await six_clients_converge([f"ws://127.0.0.1:{server.port}/ws"], ydriver, "ids-six")


@pytest.mark.redis
async def test_six_clients_on_two_processes_converge(redis_servers: list[Any],
                                                     ydriver: NodeDriver) -> None:
    """Two processes sharing the room through Redis: the relay carries 53-bit ids as sent."""
    await six_clients_converge([srv.ws_url for srv in redis_servers], ydriver,
                               f"ids-six-redis-{id(ydriver)}")


@pytest.mark.parametrize("how", ["unload", "restart", "sigkill"])
async def test_reconnect_with_old_items_duplicates_nothing(server: DocServer, how: str) -> None:
    """A 53-bit client edits, goes away, the room is unloaded (or the server restarts, or is
    SIGKILLed), and it comes back with the document it holds: no cell and no character is
    doubled, on the server or in the client."""
    write(server.root / "nb.ipynb", [new_code_cell("a = 1", id="c1"), new_markdown_cell("x")])
    client = await server.open("nb.ipynb")
    assert_wide(client)
    with client.doc.transaction():
        client.model.ycells[0]["source"].insert(0, "# typed\n")
    client.model.append_cell({"cell_type": "code", "source": "added()", "id": "c3"})
    await client.flush()
    held = client.doc
    want = sources(client.model)
    probe = await server.open("nb.ipynb")  # the server has every change
    assert await probe.wait_for(lambda m: sources(m) == want)
    await probe.close()
    await client.close()
    if how == "unload":
        await asyncio.sleep(1.5)  # YDJANGO_ROOM_UNLOAD_DELAY is 1 s here
        log = server.log()
        for _ in range(100):
            if "unloaded" in log:
                break
            await asyncio.sleep(0.1)
            log = server.log()
        assert "unloaded" in log
    elif how == "restart":
        server.stop()
        server.start()
    else:
        await asyncio.sleep(0.5)  # the log writer's batch is written within 50 ms
        server.kill()
        server.start()
    session = server.session("nb.ipynb")
    back = await DocClient.open(server.room_url(session), doc=held)
    await back.flush()
    fresh = await server.open("nb.ipynb")
    assert sources(fresh.model) == want, sources(fresh.model)
    assert sources(back.model) == want
    await back.close()
    await fresh.close()


async def test_log_after_sigkill_keeps_every_id_as_sent(server: DocServer,
                                                        ydriver: NodeDriver) -> None:
    """After a SIGKILL, the update log rows hold the 53-bit and the 32-bit client's ids
    exactly, and the reloaded room's state vector names both."""
    write(server.root / "nb.ipynb", [new_code_cell("", id="c1")])
    py = await server.open("nb.ipynb")
    node = await node_notebook(ydriver, server, "nb.ipynb")
    with py.doc.transaction():
        py.model.ycells[0]["source"].insert(0, "from pycrdt;")
    await node.nb_insert(0, 0, "from yjs;")
    await py.wait_for(lambda m: "from yjs;" in sources(m)[0])
    await asyncio.sleep(0.5)
    server.kill()
    database = server.tmp / "data" / "ydjango.sqlite3"
    with sqlite3.connect(database) as db:
        rows = [bytes(row[0]) for row in db.execute("SELECT data FROM jupyter_ydjango_update")]
    logged = {cid for row in rows for update in unpack_updates(row)
              for cid in update_client_ids(update)}
    assert py.doc.client_id in logged, (py.doc.client_id, logged)
    assert node.client_id in logged, (node.client_id, logged)
    assert py.doc.client_id & 0xFFFFFFFF not in logged  # no truncated twin
    server.start()
    fresh = await server.open("nb.ipynb")
    clients = decode_state_vector(fresh.doc.get_state())
    assert py.doc.client_id in clients and node.client_id in clients
    assert sources(fresh.model)[0].count("from pycrdt;") == 1
    await fresh.close()
    await py.close()


async def test_jupyter_nbmodel_client_and_a_yjs_client_co_edit(server: DocServer,
                                                               ydriver: NodeDriver) -> None:
    """jupyter-nbmodel-client (from PyPI) and a browser-like yjs client (``@jupyter/ydoc``
    on y-websocket) add cells to one notebook: each sees the other's, and the file holds both."""
    nbmodel = pytest.importorskip("jupyter_nbmodel_client")
    write(server.root / "nb.ipynb", [new_markdown_cell("# start", id="m1")])
    node = await node_notebook(ydriver, server, "nb.ipynb")
    url = nbmodel.get_jupyter_notebook_websocket_url(
        server_url=f"http://127.0.0.1:{server.port}", path="nb.ipynb")
    async with nbmodel.NbModelClient(url) as agent:
        assert agent.get_local_client_id() >= 1 << 32
        async def agent_sources() -> list[str]:
            return [cell["source"] if isinstance(cell["source"], str)
                    else "".join(cell["source"]) for cell in agent.as_dict()["cells"]]

        async def node_sources() -> list[str]:
            return sources(await node.nb_json())

        agent.add_code_cell("print('from the agent')")
        first = ["# start", "print('from the agent')"]
        assert await wait_equal(node_sources, first) == first  # the browser sees the agent's
        await node.nb_add_cell(2, "print('from the browser')")
        want = [*first, "print('from the browser')"]
        assert await wait_equal(agent_sources, want) == want  # and the agent the browser's
        assert await wait_equal(node_sources, want) == want

    async def file_sources() -> list[str]:
        return sources(nbformat.read(server.root / "nb.ipynb", 4))

    assert await wait_equal(file_sources, want) == want
