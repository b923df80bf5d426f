"""A document type registered with jupyter_ydoc by another package, served by a real Jupyter
server (embedded Django side).

The type is ``tasks``, registered through the ``jupyter_ydoc`` entry point by the tests' own
distribution in ``tests/support/ydoc_plugin`` (on the server's ``PYTHONPATH``); neither jupyter_ydoc
nor jupyter_ydjango knows it. Clients are pycrdt documents wrapped in the same class.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from daphne_servers import SUPPORT_DIR
from jupyter_servers import JupyterServer
from notebook_client import DocClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from ydoc_plugin.ydjango_test_ydoc import YTasks

PLUGIN_DIR = SUPPORT_DIR / "ydoc_plugin"
TASKS = {"format": "text", "type": "tasks"}
#: The file as someone wrote it: compact JSON, not as the class writes it.
LIST = {"title": "Release", "tasks": [{"text": "write", "done": True}, {"text": "test"}]}


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("ydoc-rooms")
    root = tmp / "root"
    root.mkdir()
    server = JupyterServer(tmp, root, args=("--YDjango.save_delay=0.2",),
                           PYTHONPATH=os.pathsep.join([str(SUPPORT_DIR), str(PLUGIN_DIR)]))
    yield server
    server.stop()


def tasks_of(text: str) -> list[tuple[str, bool]]:
    return [(task["text"], task.get("done", False)) for task in json.loads(text)["tasks"]]


async def wait_for_file(path: Path, predicate: Any, timeout: float = 10) -> str:
    """The file's text once ``predicate(text)`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        text = path.read_text()
        try:
            if predicate(text):
                return text
        except ValueError:  # not JSON (yet)
            pass
        assert loop.time() < deadline, f"the file is still {text!r}"
        await asyncio.sleep(0.05)


async def open_tasks(jupyter: JupyterServer, path: str, **kwargs: Any) -> DocClient:
    status, info = jupyter.session(path, body=TASKS)
    assert status in (200, 201), (status, info)
    assert (info["format"], info["type"]) == ("text", "tasks")
    return await DocClient.open(jupyter.room_url(info), kind=YTasks, **kwargs)


async def test_a_registered_type_loads_saves_and_keeps_its_history(
        jupyter: JupyterServer) -> None:
    path = jupyter.root / "release.tasks"
    path.write_text(json.dumps(LIST, separators=(",", ":")))
    alice = await open_tasks(jupyter, "release.tasks")
    # loaded through the class's set(): the document is the class's schema
    assert json.loads(alice.model.get()) == {
        "title": "Release", "tasks": [{"text": "write", "done": True},
                                      {"text": "test", "done": False}]}
    assert alice.model.dirty is False and alice.model.path == "release.tasks"

    bob = await open_tasks(jupyter, "release.tasks")
    alice.model.add("ship")
    await bob.wait_for(lambda model: len(model.ytasks) == 3)
    # saved through the class's get(), byte for byte
    saved = await wait_for_file(path, lambda text: len(tasks_of(text)) == 3)
    assert saved == alice.model.get()
    assert tasks_of(saved) == [("write", True), ("test", False), ("ship", False)]
    await alice.close()
    await bob.close()

    # a restart: the room comes back from its history, not from a new import of the file
    jupyter.stop()
    jupyter.start()
    carol = await open_tasks(jupyter, "release.tasks")
    assert tasks_of(carol.model.get()) == tasks_of(saved)
    assert alice.doc.client_id in _clients(carol.doc)  # alice's edit is the same item
    # alice, back with the document she kept, gets nothing twice
    alice = await open_tasks(jupyter, "release.tasks", doc=alice.doc)
    await asyncio.sleep(0.3)
    assert tasks_of(alice.model.get()) == tasks_of(saved)

    # changed on disk by someone else: loaded into the room through set()
    path.write_text(json.dumps({"title": "Release", "tasks": [{"text": "all done"}]}))
    await carol.wait_for(lambda model: tasks_of(model.get()) == [("all done", False)])
    await alice.wait_for(lambda model: tasks_of(model.get()) == [("all done", False)])
    await alice.close()
    await carol.close()


async def test_an_unknown_type_is_refused_clearly(jupyter: JupyterServer) -> None:
    (jupyter.root / "notes.todo").write_text("{}")
    status, body = jupyter.session("notes.todo", body={"format": "text", "type": "todo"})
    assert status == 400
    assert "unknown document type 'text':'todo'" in body["error"]
    status, body = jupyter.session("notes.todo", body={"format": "json", "type": "tasks"})
    assert status == 400  # a known type in a file format it is not served in

    # a room of an unknown type, for a file that has a fileId: refused before the handshake
    status, info = jupyter.session("notes.todo", body=TASKS)
    assert status in (200, 201)
    url = jupyter.room_url({**info, "type": "todo"})
    async with connect(url) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
    assert ws.close_code == 4400
    assert ws.close_reason == "unknown document type 'text:todo'"


def _clients(doc: Any) -> set[int]:
    from jupyter_ydjango.protocol.engines import decode_state_vector

    return set(decode_state_vector(doc.get_state()))
