"""jupyter-collaboration's in-process API and events, as other server extensions see them,
in a real Jupyter server (embedded Django side) without jupyter-collaboration installed.

Another extension is played by :mod:`collab_probe`, which looks the collaboration app up as
jupyter-server-nbmodel does and records the events; jupyter-server-nbmodel itself executes
cells into a live notebook in :func:`test_nbmodel_writes_outputs_into_the_live_room`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from daphne_servers import Server, migrate, serve_command, server_env
from jupyter_servers import JupyterServer
from nbformat.v4 import new_code_cell, new_notebook
from notebook_client import DocClient

#: Seconds a room stays loaded after its last client left (short: the tests wait for it).
UNLOAD_DELAY = 1.0
PROBE = {"probe.json": {"ServerApp": {"jpserver_extensions": {"collab_probe": True}}}}


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("collaboration-api")
    root = tmp / "root"
    root.mkdir()
    server = JupyterServer(
        tmp, root, args=("--YDjango.save_delay=0.2",
                         f"--YDjango.room_unload_delay={UNLOAD_DELAY}"),
        config=PROBE,
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A Jupyter server in front of a remote Django service (``python -m jupyter_ydjango
    serve``) on the same directory."""
    tmp = tmp_path_factory.mktemp("collaboration-api-remote")
    root = tmp / "root"
    root.mkdir()
    (tmp / "service").mkdir()
    env = server_env(tmp / "service", YDJANGO_NOTEBOOK_DIR=str(root),
                     YDJANGO_IDENTITY_SECRET="remote-secret-of-at-least-32-bytes",
                     YDJANGO_SAVE_DELAY="0.2")
    migrate(env)
    service = Server([*serve_command(), "--no-migrate"], env, tmp / "service.log")
    server = JupyterServer(tmp, root, config=PROBE, args=(
        f"--YDjango.remote_url=http://127.0.0.1:{service.port}",
        "--YDjango.shared_secret=remote-secret-of-at-least-32-bytes"))
    yield server
    server.stop()
    service.stop()


def write_notebook(path: Path, *sources: str) -> None:
    cells = [new_code_cell(source, id=f"cell-{i}") for i, source in enumerate(sources)]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def get_document(jupyter: JupyterServer, **args: Any) -> dict[str, Any]:
    status, answer = jupyter.request("POST", "probe/document", args)
    assert status == 200, (status, answer)
    return answer


async def open_room(jupyter: JupyterServer, path: str, body: Any = None,
                    kind: str = "notebook") -> tuple[str, DocClient]:
    status, info = jupyter.session(path, body=body)
    assert status in (200, 201), (status, info)
    room_id = f"{info['format']}:{info['type']}:{info['fileId']}"
    return room_id, await DocClient.open(jupyter.room_url(info), kind=kind)


async def until(condition: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_extensions_find_the_collaboration_app_by_its_name(jupyter: JupyterServer) -> None:
    status, lookup = jupyter.request("GET", "probe/lookup")
    assert status == 200
    assert lookup == {"found": True, "enabled": True, "settings_same": True,
                      "disable_rtc": False}
    assert importlib.util.find_spec("jupyter_server_ydoc") is None  # without it installed


async def test_get_document_is_the_live_room(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "live.ipynb", "x = 1")
    room_id, client = await open_room(jupyter, "live.ipynb")

    answer = get_document(jupyter, room_id=room_id, copy=False, append=" + 1")
    assert answer["document"] == "YNotebook" and answer["same"] is True
    # the edit is the room's: every client gets it, and the file
    await client.wait_for(lambda model: str(model.ycells[0]["source"]) == "x = 1 + 1")
    await until(lambda: nbformat.read(jupyter.root / "live.ipynb", 4).cells[0].source
                == "x = 1 + 1")

    # by path, as jupyter-server-nbmodel asks with the kernel session's path
    answer = get_document(jupyter, path="live.ipynb", content_type="notebook",
                          file_format="json", copy=False)
    assert answer["document"] == "YNotebook" and answer["same"] is True
    assert answer["content"]["cells"][0]["source"] == "x = 1 + 1"

    # a copy: its edits go nowhere
    answer = get_document(jupyter, room_id=room_id, append=" + 100")
    assert answer["same"] is False
    assert answer["content"]["cells"][0]["source"] == "x = 1 + 1 + 100"
    await asyncio.sleep(0.5)
    assert str(client.model.ycells[0]["source"]) == "x = 1 + 1"
    await client.close()


async def test_get_document_of_a_room_not_loaded(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "closed.ipynb", "y = 2")
    by_path = {"path": "closed.ipynb", "content_type": "notebook", "file_format": "json"}
    assert get_document(jupyter, **by_path, copy=False) == {"document": None}
    assert get_document(jupyter, path="missing.ipynb", content_type="notebook",
                        file_format="json") == {"document": None}
    assert get_document(jupyter, room_id="json:notebook:not-a-file-id") == {"document": None}
    # create: the room is loaded from the file
    answer = get_document(jupyter, **by_path, copy=False, create=True, append="  # server")
    assert answer["document"] == "YNotebook"
    await until(lambda: nbformat.read(jupyter.root / "closed.ipynb", 4).cells[0].source
                == "y = 2  # server")
    # jupyter-collaboration's argument checks
    for args in ({}, {"path": "closed.ipynb"},
                 {"room_id": "json:notebook:x", "path": "closed.ipynb"}):
        assert "You need to provide either a ``room_id`` or the ``path``" in get_document(
            jupyter, **args)["error"]


async def test_get_document_of_a_registered_type(jupyter: JupyterServer) -> None:
    (jupyter.root / "team.chat").write_text("")
    room_id, client = await open_room(jupyter, "team.chat", {"format": "text", "type": "chat"},
                                      kind="text")
    answer = get_document(jupyter, room_id=room_id, copy=False)
    assert answer["document"] == "YChat" and answer["same"] is True
    # the bound YChat gave the new chat its id, saved with it
    chat_id = json.loads(answer["content"])["metadata"]["id"]
    await until(lambda: json.loads((jupyter.root / "team.chat").read_text() or "{}")
                .get("metadata", {}).get("id") == chat_id)
    # jupyterlab-chat's chat manager (what Jupyter AI's personas work through) took the live
    # chat when the room loaded, and lets it go when the room unloads
    await until(lambda: jupyter.request("GET", "probe/chats")[1] == {chat_id: "team.chat"})
    await client.close()
    await until(lambda: jupyter.request("GET", "probe/chats")[1] == {})


async def test_session_and_awareness_events(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "events.ipynb", "z = 3")
    room_id, alice = await open_room(jupyter, "events.ipynb")
    bob = await DocClient.open(jupyter.room_url(jupyter.session("events.ipynb")[1]))
    await alice.close()
    await bob.close()

    def events() -> list[dict[str, Any]]:
        status, all_events = jupyter.request("GET", "probe/events")
        assert status == 200
        return [e for e in all_events if room_id in (e.get("room"), e.get("roomid"))]

    await until(lambda: any(e.get("action") == "clean" for e in events()))
    got = [(e["schema"], e["action"]) for e in events()]
    assert got == [("session", "initialize"), ("awareness", "join"), ("awareness", "join"),
                   ("awareness", "leave"), ("awareness", "leave"), ("session", "clean")]
    session = [e for e in events() if e["schema"] == "session"]
    assert all(e["path"] == "events.ipynb" and e["level"] == "INFO" for e in session)
    # the server's token signs in a new anonymous user for each connection
    joined = sorted(e["username"] for e in events() if e.get("action") == "join")
    left = sorted(e["username"] for e in events() if e.get("action") == "leave")
    assert joined == left and len(set(joined)) == 2 and all(joined)


async def test_nbmodel_writes_outputs_into_the_live_room(jupyter: JupyterServer) -> None:
    """jupyter-server-nbmodel executes a cell as its JupyterLab extension asks; the outputs
    reach the notebook's clients and its file, also when no client is connected any more."""
    write_notebook(jupyter.root / "run.ipynb",
                   "print('hello from the server')",
                   "import time\nprint('started', flush=True)\ntime.sleep(4)\nprint('finished')")
    room_id, watcher = await open_room(jupyter, "run.ipynb")
    status, kernel = jupyter.request("POST", "api/kernels", {"name": "python3"})
    assert status == 201, kernel
    try:
        execute(jupyter, kernel["id"], room_id, "run.ipynb", watcher, 0)
        outputs = await watcher.wait_for(lambda model: model.ycells[0]["outputs"].to_py(),
                                         timeout=60)
        assert outputs[0]["text"] == "hello from the server\n"
        await watcher.wait_for(lambda model: model.ycells[0]["execution_count"] == 1)

        # a long cell; every client leaves once it started
        execute(jupyter, kernel["id"], room_id, "run.ipynb", watcher, 1)
        await watcher.wait_for(lambda model: "started" in str(model.ycells[1]["outputs"].to_py()),
                               timeout=30)
        await watcher.close()

        def cell_1() -> Any:
            return nbformat.read(jupyter.root / "run.ipynb", 4).cells[1]

        await until(lambda: cell_1().execution_count == 2, timeout=30)
        assert "".join(out.get("text", "") for out in cell_1().outputs) == "started\nfinished\n"
    finally:
        jupyter.request("DELETE", f"api/kernels/{kernel['id']}")


async def test_remote_mode_has_no_live_documents(remote: JupyterServer) -> None:
    """With the rooms in another process, get_document finds none; clients joining and
    leaving are still reported, room loads are not."""
    status, lookup = remote.request("GET", "probe/lookup")
    assert (status, lookup["found"], lookup["enabled"]) == (200, True, True)
    write_notebook(remote.root / "remote.ipynb", "r = 1")
    room_id, client = await open_room(remote, "remote.ipynb")
    assert get_document(remote, room_id=room_id, copy=False) == {"document": None}
    assert get_document(remote, path="remote.ipynb", content_type="notebook",
                        file_format="json") == {"document": None}
    # the service serves the registered types of its own environment
    (remote.root / "remote.chat").write_text("")
    chat_id, chat = await open_room(remote, "remote.chat", {"format": "text", "type": "chat"},
                                    kind="text")
    await client.close()
    await chat.close()

    def events() -> list[dict[str, Any]]:
        return remote.request("GET", "probe/events")[1]

    await until(lambda: len(events()) == 4)
    assert [(e["schema"], e["action"], e["roomid"]) for e in events()] == [
        ("awareness", "join", room_id), ("awareness", "join", chat_id),
        ("awareness", "leave", room_id), ("awareness", "leave", chat_id)]


def execute(jupyter: JupyterServer, kernel_id: str, room_id: str, path: str,
            client: DocClient, index: int) -> None:
    """What jupyter-server-nbmodel's JupyterLab extension sends to run a cell."""
    cell = client.model.ycells[index]
    status, answer = jupyter.request("POST", f"api/kernels/{kernel_id}/execute", {
        "code": str(cell["source"]),
        "metadata": {"cell_id": cell["id"], "document_id": room_id, "document_path": path},
    })
    assert status in (200, 202), (status, answer)


