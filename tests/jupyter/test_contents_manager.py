"""Rooms open and save files through Jupyter's contents manager, as Jupyter does.

Real Jupyter servers (embedded Django side) and real services (remote), with the managers
people configure: jupytext's (percent scripts opened as notebooks, paired notebooks), a
``pre_save_hook``, a manager whose files are not on disk at all, one that reports files not
writable; and the stock file manager's checkpoints. Clients: pycrdt (``DocClient``) and node
``yjs`` + ``@jupyter/ydoc`` (``NodeDriver``).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jupytext
import nbformat
import pytest
from django_service import DocServer
from jupyter_servers import TOKEN, JupyterServer, why_not_as_user
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from notebook_client import DocClient
from yjs_client import NodeDriver

NOTEBOOK = {"format": "json", "type": "notebook"}
TEXT_FILE = {"format": "text", "type": "file"}
READER = ("--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
          "--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer")

SCRIPT = "# %%\na = 1\n\n# %% [markdown]\n# Some text\n"


def sources(model: Any) -> list[str]:
    """The cells' sources of a jupyter_ydoc model, a ``@jupyter/ydoc`` JSON or a notebook."""
    if not isinstance(model, dict):
        model = model.get()
    return ["".join(cell["source"]) for cell in model["cells"]]


def append_source(client: DocClient, index: int, text: str) -> None:
    source = client.model.ycells[index]["source"]
    source.insert(len(source), text)


async def wait_until(predicate: Any, what: str, timeout: float = 20) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def open_room(server: Any, path: str, kind: dict[str, str] = NOTEBOOK,
                    token: str = TOKEN) -> DocClient:
    """Open ``path`` as JupyterLab does (session, then websocket); the client's
    ``file_id`` is the document's."""
    if isinstance(server, JupyterServer):
        status, info = server.session(path, token=token, body=kind)
        assert status in (200, 201), (status, info)
        url = server.room_url(info, token=token)
    else:
        info = server.session(path, kind)
        url = server.room_url(info)
    client = await DocClient.open(url, "notebook" if kind["type"] == "notebook" else "text")
    client.file_id = info["fileId"]  # type: ignore[attr-defined]
    return client


def session_status(server: Any, path: str, kind: dict[str, str] = NOTEBOOK,
                   token: str = TOKEN) -> int:
    if isinstance(server, JupyterServer):
        return server.session(path, token=token, body=kind)[0]
    return server.request("PUT", f"api/collaboration/session/{quote(path)}", kind)[0]


# --- jupytext -----------------------------------------------------------------------------


@pytest.fixture
def jupytext_server(tmp_path: Path) -> Any:
    root = tmp_path / "root"
    root.mkdir()
    server = JupyterServer(tmp_path, root, jupytext=True, args=("--YDjango.save_delay=0.2",))
    yield server
    server.stop()


@pytest.mark.node
async def test_a_percent_script_opens_as_a_notebook_and_saves_as_a_script(
        jupytext_server: JupyterServer, ydriver: NodeDriver) -> None:
    server = jupytext_server
    script = server.root / "script.py"
    script.write_text(SCRIPT)
    status, answer = server.request("GET", "api/contents/script.py?type=notebook")
    assert status == 200 and answer["type"] == "notebook", "jupytext serves it as a notebook"
    py = await open_room(server, "script.py")
    assert sources(py.model) == ["a = 1", "Some text"]
    _, info = server.session("script.py")
    node = await ydriver.connect(server.url("api/collaboration/room", ws=True),
                                 f"json:notebook:{info['fileId']}",
                                 {"sessionId": info["sessionId"], "token": TOKEN},
                                 notebook=True, reconnect=False)
    await node.nb_insert(0, len("a = 1"), "  # from node")
    append_source(py, 1, ", from pycrdt")
    want = ["a = 1  # from node", "Some text, from pycrdt"]
    await wait_until(lambda: sources(py.model) == want, "pycrdt sees both edits")
    # (pycrdt's edit reaches node through the room a little later: waited for, not raced)

    async def node_sees_both() -> bool:
        return sources(await node.nb_json()) == want

    await wait_until(node_sees_both, "node sees both edits")
    assert await py.save() == "success"
    await py.close()
    await node.close()
    written = script.read_text()
    assert written.lstrip().startswith(("# %%", "# ---")), written  # still a percent script
    assert sources(jupytext.read(script)) == want
    assert not (server.root / "script.ipynb").exists()
    assert "not valid JSON" not in server.log()


async def test_a_paired_notebook_keeps_both_files_in_agreement(
        jupytext_server: JupyterServer) -> None:
    server = jupytext_server
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_markdown_cell("Notes")])
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    status, _ = server.request("PUT", "api/contents/pair.ipynb",
                               {"type": "notebook", "format": "json", "content": nb})
    assert status in (200, 201)
    ipynb, script = server.root / "pair.ipynb", server.root / "pair.py"
    assert script.exists(), "jupytext writes the pair"
    client = await open_room(server, "pair.ipynb")
    append_source(client, 0, " + 1")
    assert await client.save() == "success"
    assert sources(jupytext.read(script)) == ["x = 1 + 1", "Notes"]
    assert sources(nbformat.read(ipynb, 4)) == ["x = 1 + 1", "Notes"]
    # an edit of the script on disk (an editor, git) reaches the room, once
    await asyncio.sleep(1.1)  # a later modification time than the notebook's
    script.write_text(script.read_text().replace("x = 1 + 1", "x = 2")
                      + "\n# %%\ny = 3\n")
    await client.wait_for(lambda m: sources(m) == ["x = 2", "Notes", "y = 3"], timeout=20)
    append_source(client, 2, "  # again")
    assert await client.save() == "success"
    await client.close()
    want = ["x = 2", "Notes", "y = 3  # again"]
    assert sources(jupytext.read(script)) == want
    assert sources(nbformat.read(ipynb, 4)) == want, "no duplicate cells, both files agree"
    assert not list(server.root.glob("pair.unsaved-*")), "nothing was taken for unsaved"


async def test_a_paired_notebook_opened_as_its_script_is_the_same_document(
        jupytext_server: JupyterServer) -> None:
    server = jupytext_server
    nb = new_notebook(cells=[new_code_cell("z = 1")])
    nb.metadata["jupytext"] = {"formats": "ipynb,py:percent"}
    server.request("PUT", "api/contents/twin.ipynb",
                   {"type": "notebook", "format": "json", "content": nb})
    _, by_notebook = server.session("twin.ipynb")
    _, by_script = server.session("twin.py")
    assert by_script["fileId"] == by_notebook["fileId"]
    a = await open_room(server, "twin.ipynb")
    b = await open_room(server, "twin.py")
    append_source(b, 0, " # from the script's tab")
    await a.wait_for(lambda m: sources(m) == ["z = 1 # from the script's tab"])
    assert await a.save() == "success"
    await a.close()
    await b.close()
    assert sources(jupytext.read(server.root / "twin.py")) == ["z = 1 # from the script's tab"]


# --- save hooks, managers without files on disk, read-only files -----------------------------


async def test_a_pre_save_hook_runs_on_the_rooms_saves(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    cell = new_code_cell("print(1)", execution_count=3,
                         outputs=[new_output("stream", name="stdout", text="1\n")])
    nbformat.write(new_notebook(cells=[cell]), root / "hooked.ipynb")
    server = JupyterServer(
        tmp_path, root, args=("--ContentsManager.pre_save_hook=contents_managers.strip_outputs",))
    try:
        client = await open_room(server, "hooked.ipynb")
        assert client.model.get()["cells"][0]["outputs"], "opened with its outputs"
        append_source(client, 0, "  # edited")
        assert await client.save() == "success"
        await client.close()
        saved = nbformat.read(root / "hooked.ipynb", 4)
        assert saved.cells[0].source == "print(1)  # edited"
        assert saved.cells[0].outputs == [] and saved.cells[0].execution_count is None
    finally:
        server.stop()


async def test_a_manager_whose_files_are_not_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    text = nbformat.writes(new_notebook(cells=[new_code_cell("m = 1")]))
    server = JupyterServer(
        tmp_path, root,
        args=("--ServerApp.contents_manager_class=contents_managers.MemoryContentsManager",),
        MEMORY_CONTENTS=json.dumps({"mem/in-memory.ipynb": text}))
    try:
        client = await open_room(server, "mem/in-memory.ipynb")
        assert sources(client.model) == ["m = 1"]
        append_source(client, 0, " + 1")
        assert await client.save() == "success"
        status, model = server.request("GET", "api/contents/mem/in-memory.ipynb")
        assert status == 200 and sources(model["content"]) == ["m = 1 + 1"]
        assert not any(root.rglob("*.ipynb")), "nothing was written on disk"
        # a change made through the contents API (another tool) reaches the room
        changed = new_notebook(cells=[new_code_cell("m = 2")])
        status, _ = server.request("PUT", "api/contents/mem/in-memory.ipynb",
                                   {"type": "notebook", "format": "json", "content": changed})
        assert status == 200
        await client.wait_for(lambda m: sources(m) == ["m = 2"], timeout=20)
        await client.close()
        assert session_status(server, "mem/missing.ipynb") == 404
    finally:
        server.stop()


async def check_read_only_file(server: Any, path: Path, token: str = TOKEN) -> None:
    """A file the manager reports not writable opens read-only and stays byte-identical."""
    before = path.read_bytes()
    client = await open_room(server, path.name, token=token)
    assert sources(client.model) == ["r = 1"]
    notice = await client.wait_raw(lambda m: m.get("status") == "read-only")
    assert notice["reason"]
    append_source(client, 0, " + 1")
    await client.flush()
    await wait_until(lambda: client.denied, "the edit refused")
    # a save writes nothing: it fails, or says that the file holds the room's content
    # already (where the room can tell: it read the file's bytes itself)
    result = await client.save()
    assert result == "failed" or (result == "success" and path.read_bytes() == before), result
    other = await open_room(server, path.name, token=token)
    assert sources(other.model) == ["r = 1"], "the refused edit reached nobody"
    status = room_status(server, client)
    assert status["readOnly"] is True and status["fileReadOnly"], status
    await client.close()
    await other.close()
    await asyncio.sleep(0.5)
    assert path.read_bytes() == before


def room_status(server: Any, client: DocClient, token: str = TOKEN) -> dict[str, Any]:
    path = f"api/ydjango/rooms/{client.file_id}"  # type: ignore[attr-defined]
    status, body = (server.request("GET", path, token=token)
                    if isinstance(server, JupyterServer) else server.request("GET", path))
    assert status == 200, (status, body)
    return body


async def test_a_file_the_manager_reports_read_only_is_served_read_only(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("r = 1")]), root / "locked.ipynb")
    server = JupyterServer(
        tmp_path, root,
        args=("--ServerApp.contents_manager_class=contents_managers.ReadOnlyContentsManager",
              "--YDjango.save_delay=0.2"))
    try:
        await check_read_only_file(server, root / "locked.ipynb")
    finally:
        server.stop()


async def test_a_0444_notebook_seen_by_a_user_other_than_root(tmp_path: Path) -> None:
    why = why_not_as_user("nobody")
    if why:
        pytest.skip(why)
    root = tmp_path / "root"
    root.mkdir()
    path = root / "mine.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("r = 1")]), path)
    path.chmod(0o444)
    server = JupyterServer(tmp_path, root, args=("--YDjango.save_delay=0.2",),
                           run_as="nobody")
    try:
        await check_read_only_file(server, path)
    finally:
        server.stop()


# --- hidden files and hide_globs -------------------------------------------------------------


def write_hidden(root: Path) -> None:
    (root / "__pycache__").mkdir(parents=True)
    (root / "__pycache__" / "notes.txt").write_text("cached")
    (root / "build.pyc").write_text("compiled")
    (root / ".env").write_text("SECRET=1")
    (root / "plain.txt").write_text("plain")


HIDDEN = ("__pycache__/notes.txt", "build.pyc", ".env")


async def test_hidden_files_and_hide_globs_get_no_session_for_anyone(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_hidden(root)
    server = JupyterServer(tmp_path, root, args=READER)
    try:
        for token in ("writer-token", "reader-token"):
            for path in HIDDEN:
                assert session_status(server, path, TEXT_FILE, token) == 404, (token, path)
            assert session_status(server, "plain.txt", TEXT_FILE, token) in (200, 201)
    finally:
        server.stop()


async def test_a_room_of_a_file_hidden_since_sends_nothing(tmp_path: Path) -> None:
    """A document made while ``hide_globs`` let the file through: once it does not, its room
    is refused (4404), for writers and readers."""
    root = tmp_path / "root"
    write_hidden(root)
    server = JupyterServer(tmp_path, root, args=(*READER, "--ContentsManager.hide_globs=[]"))
    try:
        _, info = server.session("build.pyc", token="writer-token", body=TEXT_FILE)
        server.stop()
        server.args = [a for a in server.args if not a.startswith("--ContentsManager.hide")]
        server.start()
        for token in ("writer-token", "reader-token"):
            client = await DocClient.open(server.room_url(info, token=token), "text",
                                          sync=False)
            assert await client.wait_closed() in (1003, 4404), token
            assert "compiled" not in str(client.model.get())
    finally:
        server.stop()


# --- checkpoints -----------------------------------------------------------------------------


async def test_checkpoints_hold_the_saved_room_and_a_revert_reaches_it(tmp_path: Path) -> None:
    """JupyterLab makes checkpoints itself, through the contents API, once a save is done
    (as with jupyter-collaboration, whose server makes none): a checkpoint made after the
    room's save holds it, and "revert to checkpoint" is a change of the file that the room
    loads."""
    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("c = 1")]), root / "kept.ipynb")
    server = JupyterServer(tmp_path, root, args=("--YDjango.save_delay=0.2",))
    try:
        client = await open_room(server, "kept.ipynb")
        append_source(client, 0, "  # saved")
        assert await client.save() == "success"
        status, checkpoint = server.request("POST", "api/contents/kept.ipynb/checkpoints")
        assert status == 201, checkpoint
        append_source(client, 0, "  # later")
        assert await client.save() == "success"
        assert sources(nbformat.read(root / "kept.ipynb", 4)) == ["c = 1  # saved  # later"]
        status, _ = server.request(
            "POST", f"api/contents/kept.ipynb/checkpoints/{checkpoint['id']}")
        assert status == 204
        await client.wait_for(lambda m: sources(m) == ["c = 1  # saved"], timeout=20)
        await client.close()
    finally:
        server.stop()


# --- remote: the service's own contents manager -------------------------------------------------


async def test_remote_a_percent_script_through_jupytext(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "script.py").write_text(SCRIPT)
    server = DocServer(tmp_path, root,
                       YDJANGO_CONTENTS_MANAGER_CLASS="jupytext.AsyncTextFileContentsManager")
    try:
        client = await open_room(server, "script.py")
        assert sources(client.model) == ["a = 1", "Some text"]
        append_source(client, 0, " + 1")
        assert await client.save() == "success"
        await client.close()
        assert sources(jupytext.read(root / "script.py")) == ["a = 1 + 1", "Some text"]
    finally:
        server.stop()


async def test_remote_hidden_files_and_hide_globs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_hidden(root)
    server = DocServer(tmp_path, root)
    try:
        for path in HIDDEN:
            assert session_status(server, path, TEXT_FILE) == 404, path
        assert session_status(server, "plain.txt", TEXT_FILE) in (200, 201)
    finally:
        server.stop()


async def test_remote_a_read_only_file(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("r = 1")]), root / "locked.ipynb")
    server = DocServer(tmp_path, root,
                       YDJANGO_CONTENTS_MANAGER_CLASS="contents_managers.ReadOnlyContentsManager")
    try:
        await check_read_only_file(server, root / "locked.ipynb")
    finally:
        server.stop()
