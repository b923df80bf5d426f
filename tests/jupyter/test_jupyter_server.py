"""The Jupyter server extension in a real Jupyter server process, embedded Django side.

Clients are real: pycrdt + jupyter_ydoc (:mod:`docclient`), Yjs / y-websocket in node
(:mod:`yclient`), raw websockets and raw HTTP. The server runs under a base URL (``/jp/``),
so every test also proves that the base URL is stripped on the way to the Django side.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pycrdt
import pytest
from jupyter_servers import TOKEN, JupyterServer
from jupyter_ydoc import YNotebook
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbformat.v4.rwbase import rejoin_lines
from notebook_client import DocClient
from notebooks import FIXTURES, INVALID_FIXTURE, REFUSED, TOLERATED
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from yjs_client import NodeDriver

from jupyter_ydjango.protocol.messages import (
    read_var_string,
    read_var_uint,
    write_var_string,
    write_var_uint,
)

#: The test server's frame limit (small, so that the oversized-frame tests are cheap).
MAX_MESSAGE_SIZE = 1_000_000


def small_notebook(text: str = "hello") -> Any:
    return new_notebook(cells=[
        new_markdown_cell(f"# {text}", id="md-1"),
        new_code_cell("print(1)", id="code-1", execution_count=1,
                      outputs=[new_output("stream", name="stdout", text="1\n")]),
    ])


def write_notebook(path: Path, nb: Any = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb or small_notebook(path.stem), path)
    return path


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("jupyter")
    root = tmp / "root"
    root.mkdir()
    write_notebook(tmp / "outside.ipynb")  # next to the root: must stay out of reach
    if FIXTURES.is_dir():
        shutil.copytree(FIXTURES, root / "fixtures")
    server = JupyterServer(tmp, root, base_url="/jp/",
                           args=(f"--YDjango.max_message_size={MAX_MESSAGE_SIZE}",
                                 "--YDjango.save_delay=0.2"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server with three users: writer, reader (read-only) and nobody (no access)."""
    tmp = tmp_path_factory.mktemp("users")
    root = tmp / "root"
    write_notebook(root / "shared.ipynb")
    server = JupyterServer(tmp, root, args=(
        "--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
        "--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer",
        "--YDjango.save_delay=0.2",
    ))
    yield server
    server.stop()


async def open_notebook(server: JupyterServer, path: str, token: str = TOKEN,
                        **kwargs: Any) -> DocClient:
    status, info = server.session(path, token=token)
    assert status in (200, 201), (status, info)
    return await DocClient.open(server.room_url(info, token=token), **kwargs)


async def wait_until(predicate: Any, what: str, timeout: float = 30) -> Any:
    """Poll ``predicate`` until it is true (its value), failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.02)
    return value


def source_of(model: Any, index: int) -> str:
    return str(model.ycells[index]["source"])


def append_source(model: Any, index: int, text: str) -> None:
    source = model.ycells[index]["source"]
    source.insert(len(source), text)


# --- the extension is installed and enabled -----------------------------------------------


def test_extension_is_listed_enabled_and_ok(jupyter: JupyterServer) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_server", "extension", "list"],
        env=jupyter.env, capture_output=True, text=True, check=True, timeout=60,
    )
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert "jupyter_ydjango enabled" in text
    assert re.search(r"jupyter_ydjango [0-9.]+ OK", text), text


# --- session API ------------------------------------------------------------------------------


def test_startup_heap_is_kept_out_of_garbage_collection(jupyter: JupyterServer) -> None:
    found = re.search(r"jupyter_ydjango: (\d+) start-up objects kept out of garbage collection",
                      jupyter.log())
    assert found, jupyter.log()[-2000:]
    assert int(found.group(1)) > 100_000, "a Jupyter server with Django holds ~200,000"


def test_session_created_then_known(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "session" / "a b é.ipynb")
    write_notebook(jupyter.root / "session" / "other.ipynb")
    status, first = jupyter.session("session/a b é.ipynb")
    assert status == 201
    assert set(first) == {"format", "type", "fileId", "sessionId"}
    assert (first["format"], first["type"]) == ("json", "notebook")
    status, again = jupyter.session("session/a b é.ipynb")
    assert status == 200 and again == first
    status, other = jupyter.session("session/other.ipynb")
    assert status == 201
    assert other["fileId"] != first["fileId"] and other["sessionId"]


def test_session_errors(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "errors.ipynb")
    assert jupyter.session("no/such/file.ipynb")[0] == 404
    assert jupyter.request("PUT", "api/collaboration/session/errors.ipynb", b"{not json",
                           raw=True)[0] == 400
    assert jupyter.session("errors.ipynb", body={"format": "json", "type": "spreadsheet"})[0] == 400


@pytest.mark.parametrize("path", [
    "../outside.ipynb",
    "%2e%2e/outside.ipynb",
    "%2E%2E%2Foutside.ipynb",
    "fixtures/../../outside.ipynb",
    "fixtures/%2e%2e/%2e%2e/outside.ipynb",
])
def test_session_outside_the_root_is_forbidden(jupyter: JupyterServer, path: str) -> None:
    status, body = jupyter.request("PUT", f"api/collaboration/session/{path}",
                                   {"format": "json", "type": "notebook"})
    assert status == 403, (status, body)


def test_no_token_no_access(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "private.ipynb")
    for token in (None, "wrong-token"):
        status, _ = jupyter.session("private.ipynb", token=token)
        assert status in (401, 403)
        status, _ = jupyter.request("GET", "api/ydjango/rooms/anything", token=token)
        assert status in (401, 403)


async def test_websocket_without_token_is_refused(jupyter: JupyterServer) -> None:
    _, info = jupyter.session(write_notebook(jupyter.root / "ws-private.ipynb").name)
    for token in (None, "wrong-token"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(jupyter.room_url(info, token=token), open_timeout=10)
        assert refused.value.response.status_code == 403


def test_base_url_is_required(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "base.ipynb")
    jupyter.base_url = "/"
    try:
        assert jupyter.session("base.ipynb")[0] == 404
    finally:
        jupyter.base_url = "/jp/"


# --- rooms ------------------------------------------------------------------------------------


async def test_edit_save_and_status(jupyter: JupyterServer) -> None:
    path = write_notebook(jupyter.root / "edit.ipynb")
    status, info = jupyter.session("edit.ipynb")
    a = await DocClient.open(jupyter.room_url(info))
    b = await DocClient.open(jupyter.room_url(info))
    try:
        assert source_of(a.model, 0) == "# edit"
        append_source(a.model, 0, " and more")
        await b.wait_for(lambda m: source_of(m, 0) == "# edit and more")
        assert await a.save() == "success"  # saved now, or after the delay already
        assert nbformat.read(path, as_version=4).cells[0].source == "# edit and more"

        status, room = jupyter.request("GET", f"api/ydjango/rooms/{info['fileId']}")
        assert status == 200
        assert {"fileId", "path", "room", "loaded", "connections", "lastSaved", "saveError",
                "readOnly"} <= set(room)
        assert room["fileId"] == info["fileId"] and room["path"] == "edit.ipynb"
        assert room["loaded"] is True and room["connections"] == 2
        assert room["readOnly"] is False and room["lastSaved"]
    finally:
        await a.close()
        await b.close()
    assert jupyter.request("GET", "api/ydjango/rooms/no-such-id")[0] == 404


async def test_raw_save_request_and_answer_bytes(jupyter: JupyterServer) -> None:
    _, info = jupyter.session(write_notebook(jupyter.root / "raw.ipynb").name)
    async with connect(jupyter.room_url(info), max_size=None) as ws:
        await ws.send(b"\x02" + write_var_string("save") + write_var_uint(300))
        while True:
            frame = await asyncio.wait_for(ws.recv(), 10)
            if frame[:1] == b"\x02":
                break
        message_type, pos = read_var_uint(frame, 0)
        text, end = read_var_string(frame, pos)
        assert message_type == 2 and end == len(frame)
        reply = json.loads(text)
        assert reply["type"] == "save" and reply["responseTo"] == 300
        assert reply["status"] == "success"


async def test_browser_headers_stay_on_the_jupyter_side(jupyter: JupyterServer) -> None:
    # Jupyter lets token-authenticated clients in from any origin; the Django side would refuse
    # a foreign Origin, so the connection working shows that Origin (and the token header) are
    # not forwarded.
    _, info = jupyter.session(write_notebook(jupyter.root / "origin.ipynb").name)
    client = await DocClient.open(jupyter.room_url(info, token=None), headers={
        "Origin": "https://elsewhere.example", "Authorization": f"token {TOKEN}",
        "Cookie": "sessionid=not-a-django-session"})
    assert source_of(client.model, 0) == "# origin"
    await client.close()


async def test_stale_session_is_closed_with_1003(jupyter: JupyterServer) -> None:
    _, info = jupyter.session(write_notebook(jupyter.root / "stale.ipynb").name)
    client = await DocClient.open(jupyter.room_url(info, session_id="from-an-old-run"),
                                  sync=False)
    assert await client.wait_closed() == 1003
    assert json.loads(client.ws.close_reason) == {
        "reason": "unknown_session", "sessionId": "from-an-old-run", "reloadable": True}
    ok = await DocClient.open(jupyter.room_url(info))  # the current session is fine
    await ok.close()


async def test_unknown_file_id_is_closed_with_4404(jupyter: JupyterServer) -> None:
    info = {"format": "json", "type": "notebook", "fileId": "nope", "sessionId": ""}
    client = await DocClient.open(jupyter.room_url(info), sync=False)
    assert await client.wait_closed() == 4404


async def test_frame_limits_and_text_frames(jupyter: JupyterServer) -> None:
    _, info = jupyter.session(write_notebook(jupyter.root / "limits.ipynb").name)
    cases = [
        (b"\x00\x02" + b"\x00" * (MAX_MESSAGE_SIZE + 100), 4413),  # refused by the Django side
        (b"\x00" * (MAX_MESSAGE_SIZE + 2 * 1024 * 1024), 1009),  # far too big: by Tornado
        ("text", 4415),
    ]
    for frame, code in cases:
        async with connect(jupyter.room_url(info), max_size=None) as ws:
            with contextlib.suppress(ConnectionClosed):  # closed while we still send
                await ws.send(frame)
            await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == code
    client = await DocClient.open(jupyter.room_url(info))  # the room is intact
    assert source_of(client.model, 0) == "# limits"
    await client.close()


async def test_rename_through_jupyter_keeps_the_file_id(jupyter: JupyterServer) -> None:
    write_notebook(jupyter.root / "before.ipynb")
    _, info = jupyter.session("before.ipynb")
    status, _ = jupyter.request("PATCH", "api/contents/before.ipynb", {"path": "after.ipynb"})
    assert status == 200
    # at once: a session request waits for the renames reported before it
    status, after = jupyter.session("after.ipynb")
    assert status == 200 and after["fileId"] == info["fileId"]


# --- every fixture notebook, as jupyter_ydoc reads it -------------------------------------------


def _fixtures(invalid: bool) -> list[Any]:
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{FIXTURES} is absent"))]
    names = sorted(p.name for p in FIXTURES.glob("*.ipynb"))
    return [pytest.param(n, id=n) for n in names if (n == INVALID_FIXTURE) == invalid]


def plain(value: Any) -> Any:
    return json.loads(json.dumps(value))


def expected_notebook(path: Path, got: dict[str, Any]) -> dict[str, Any]:
    """nbformat's reading of ``path``, normalised as the document schema stores it: empty
    attachments omitted, and cells that have no id in a 4.5+ file take the id the server
    derived (nbformat would make up a random one)."""
    nb = nbformat.read(path, as_version=4)
    raw_cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    nb = copy.deepcopy(nb)
    for cell, raw, ours in zip(nb.cells, raw_cells, got["cells"], strict=True):
        if cell.cell_type in ("markdown", "raw") and cell.get("attachments") == {}:
            del cell["attachments"]
        if "id" not in raw and "id" in cell and "id" in ours:
            cell["id"] = ours["id"]
    return plain(nb)


@pytest.mark.parametrize("name", _fixtures(invalid=False))
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
async def test_fixture_notebook_as_jupyter_ydoc_reads_it(jupyter: JupyterServer,
                                                        name: str) -> None:
    client = await open_notebook(jupyter, f"fixtures/{name}")
    try:
        got = plain(client.model.get())
    finally:
        await client.close()
    expected = expected_notebook(jupyter.root / "fixtures" / name, got)
    # every cell in the document has a source, for the frontend's editor
    assert got["cells"] == [{"source": "", **cell} for cell in expected["cells"]]
    assert got["metadata"] == expected["metadata"]
    assert (got["nbformat"], got["nbformat_minor"]) == (expected["nbformat"],
                                                        expected["nbformat_minor"])


# --- whatever Jupyter opens opens; what it refuses is refused with a reason -----------------------


def _tolerated() -> list[Any]:
    return ([pytest.param(name, id=name) for name in TOLERATED]
            + _fixtures(invalid=True) + _fixtures(invalid=False))


@pytest.mark.parametrize("case", _tolerated())
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
async def test_notebooks_jupyter_opens_open_and_save_in_their_shape(
        jupyter: JupyterServer, case: str) -> None:
    if case in TOLERATED:
        name = f"tolerated/{case}.ipynb"
        (jupyter.root / "tolerated").mkdir(exist_ok=True)
        (jupyter.root / name).write_text(TOLERATED[case], encoding="utf-8")
    else:
        name = f"fixtures/{case}"
        shutil.copy(jupyter.root / name, jupyter.root / f"fixtures/copy-{case}")
        name = f"fixtures/copy-{case}"
    path = jupyter.root / name
    before = path.read_text(encoding="utf-8")
    client = await open_notebook(jupyter, name)
    try:
        cells = client.model.ycells
        index = next((i for i, cell in enumerate(cells) if "source" in cell), None)
        if index is not None:
            append_source(client.model, index, " # edited")
        await client.flush()
        assert await client.save() == "success"
    finally:
        await client.close()
    expected = normal_notebook(before)
    written = normal_notebook(path.read_text(encoding="utf-8"))
    if index is not None:
        cell = expected["cells"][index]
        cell["source"] = cell.get("source", "") + " # edited"
    if expected.get("nbformat") == 4:
        for ours, theirs in zip(written["cells"], expected["cells"], strict=True):
            if "id" in ours and "id" not in theirs and expected["nbformat_minor"] >= 5:
                theirs["id"] = ours["id"]  # given one, as Jupyter gives one
            if theirs.get("attachments") == {}:
                del theirs["attachments"]
        assert written == expected
    if case in TOLERATED and case != "no nbformat":
        assert f"{name} does not follow its nbformat schema" in jupyter.log()


def normal_notebook(text: str) -> Any:
    """A file's notebook as plain JSON with multi-line strings joined."""
    return plain(rejoin_lines(json.loads(text, object_hook=nbformat.NotebookNode)))


@pytest.mark.parametrize("case", sorted(REFUSED))
async def test_files_jupyter_refuses_are_refused_with_a_reason(jupyter: JupyterServer,
                                                              case: str) -> None:
    data, summary = REFUSED[case]
    (jupyter.root / "refused").mkdir(exist_ok=True)
    name = f"refused/{case}.ipynb"
    (jupyter.root / name).write_bytes(data)
    status, info = jupyter.session(name)
    assert status in (200, 201)
    client = await DocClient.open(jupyter.room_url(info), sync=False)
    # the stock frontend shows its "Document error" dialog with errorReason
    assert await client.wait_closed() == 1003
    assert json.loads(client.close_reason) == {
        "reason": "initialization_error", "reloadable": False, "errorReason": summary}
    assert not client.synced.is_set()
    assert name in jupyter.log() and "cannot load" in jupyter.log()


# --- Yjs clients (node, y-websocket) ----------------------------------------------------------


@pytest.mark.node
async def test_yjs_clients_read_the_notebook_and_share_awareness(
        jupyter: JupyterServer, ydriver: NodeDriver) -> None:
    path = write_notebook(jupyter.root / "yjs.ipynb")
    _, info = jupyter.session("yjs.ipynb")
    base = jupyter.url("api/collaboration/room", ws=True)
    room = f"json:notebook:{info['fileId']}"
    client = await ydriver.connect(base, room, {"sessionId": info["sessionId"], "token": TOKEN},
                                   reconnect=False)
    doc = pycrdt.Doc()
    doc.apply_update(await client.state())
    got = plain(YNotebook(doc).get())
    assert got["cells"] == expected_notebook(path, got)["cells"]

    params = {"token": TOKEN}
    a = await ydriver.connect(base, "JupyterLab:globalAwareness", params,
                              awareness={"user": {"name": "A"}, "current": "a"})
    b = await ydriver.connect(base, "JupyterLab:globalAwareness", params,
                              awareness={"user": {"name": "B"}, "current": "b"})
    # each state shows the user Jupyter authenticated, not the name the client claimed
    # (a token without a login cookie is a new anonymous user at each connection)
    await b.wait_awareness(a.client_id)
    await a.wait_awareness(b.client_id)
    for watcher, other, claimed in ((b, a, "a"), (a, b, "b")):
        state = (await watcher.awareness())[other.client_id]
        assert state["current"] == claimed, state
        assert state["user"]["name"].startswith("Anonymous "), state
        assert state["user"]["username"] and state["user"]["initials"], state
    await a.kill()  # vanishes without a goodbye: the room removes its cursor
    await b.wait_awareness(a.client_id, present=False)


# --- read-only users ----------------------------------------------------------------------------


async def test_reader_cannot_change_the_notebook(users: JupyterServer) -> None:
    writer = await open_notebook(users, "shared.ipynb", token="writer-token")
    reader = await open_notebook(users, "shared.ipynb", token="reader-token")
    try:
        assert source_of(reader.model, 0) == "# shared"
        append_source(reader.model, 0, " (reader was here)")
        await reader.flush()
        await wait_until(lambda: reader.denied, "the reader is told its change was refused")
        assert await reader.save() == "success"  # the file holds the room's document
        # the writer's edits still reach the reader; the reader's never reach anyone
        append_source(writer.model, 1, "  # writer")
        await reader.wait_for(lambda m: source_of(m, 1).endswith("# writer"))
        # the save's answer comes after anything the reader's change could have sent
        assert await writer.save() == "success"
        assert source_of(writer.model, 0) == "# shared"
        saved = nbformat.read(users.root / "shared.ipynb", as_version=4)
        assert saved.cells[0].source == "# shared"
        assert saved.cells[1].source == "print(1)  # writer"
        _, info = users.session("shared.ipynb", token="reader-token")
        status, room = users.request("GET", f"api/ydjango/rooms/{info['fileId']}",
                                     token="reader-token")
        assert status == 200 and room["readOnly"] is True
    finally:
        await writer.close()
        await reader.close()


async def test_user_without_read_permission_is_refused(users: JupyterServer) -> None:
    assert users.session("shared.ipynb", token="nobody-token")[0] == 403
    _, info = users.session("shared.ipynb", token="writer-token")
    with pytest.raises(InvalidStatus) as refused:
        await connect(users.room_url(info, token="nobody-token"), open_timeout=10)
    assert refused.value.response.status_code == 403


# --- start-up and shutdown ------------------------------------------------------------------------


def test_conflicting_collaboration_extension(tmp_path: Path) -> None:
    """A (stand-in) jupyter_server_ydoc enabled too: the error names it and ours answers."""
    fake = tmp_path / "fake" / "jupyter_server_ydoc"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "from jupyter_server.base.handlers import APIHandler\n"
        "from jupyter_server.extension.application import ExtensionApp\n"
        "class Teapot(APIHandler):\n"
        "    def put(self, path):\n"
        "        self.set_status(418)\n"
        "        self.finish('{}')\n"
        "class App(ExtensionApp):\n"
        "    name = 'jupyter_server_ydoc'\n"
        "    def initialize_handlers(self):\n"
        "        self.handlers.append((r'/api/collaboration/session/(.*)', Teapot))\n"
        "def _jupyter_server_extension_points():\n"
        "    return [{'module': 'jupyter_server_ydoc', 'app': App}]\n"
    )
    root = tmp_path / "root"
    write_notebook(root / "x.ipynb")
    import os

    support = Path(__file__).parents[1] / "support"
    pythonpath = os.pathsep.join([str(tmp_path / "fake"), str(support)])
    # enabled in the same config directory, as `pip install jupyter-collaboration` does
    enable = {"ServerApp": {"jpserver_extensions": {"jupyter_server_ydoc": True}}}
    server = JupyterServer(tmp_path, root, config={"jupyter_server_ydoc.json": enable},
                           PYTHONPATH=pythonpath)
    try:
        status, body = server.session("x.ipynb")
        assert status == 201, (status, body)
        log = server.log()
        assert "jupyter_server_ydoc | extension was successfully loaded" in log
        assert "pip uninstall jupyter-collaboration jupyter-server-ydoc" in log
    finally:
        server.stop()


def test_remote_mode_needs_a_shared_secret(tmp_path: Path) -> None:
    # (servers.Server fails to show the log of a process that exited: read the file)
    with pytest.raises((RuntimeError, ValueError)):
        JupyterServer(tmp_path, tmp_path, args=("--YDjango.remote_url=http://127.0.0.1:9",),
                      YDJANGO_IDENTITY_SECRET="")
    log = (tmp_path / "jupyter.log").read_text()
    assert "YDjango.remote_url is set but no shared secret" in log
    assert "c.YDjango.shared_secret" in log


async def test_embedded_start_failure_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_notebook(root / "x.ipynb")
    server = JupyterServer(tmp_path, root, args=("--YDjango.asgi_application=no.such:app",))
    try:
        status, body = server.session("x.ipynb")
        assert status == 503
        assert "embedded Django side failed to start" in body["message"]
        assert "No module named 'no'" in body["message"]
        client = await DocClient.open(server.room_url({"format": "json", "type": "notebook",
                                                       "fileId": "f", "sessionId": "s"}),
                                      sync=False)
        assert await client.wait_closed() == 1011
    finally:
        server.stop()


async def test_shutdown_closes_clients_and_saves(tmp_path: Path) -> None:
    root = tmp_path / "root"
    path = write_notebook(root / "last.ipynb")
    server = JupyterServer(tmp_path, root, args=("--YDjango.save_delay=600",))
    try:
        client = await open_notebook(server, "last.ipynb")
        append_source(client.model, 0, " edited just before shutdown")
        await client.flush()
        _, info = server.session("last.ipynb")
        await wait_until(lambda: server.request(
            "GET", f"api/ydjango/rooms/{info['fileId']}")[1].get("unsaved"),
            "the edit reached the room")
        assert nbformat.read(path, as_version=4).cells[0].source == "# last"
        server.proc.terminate()
        assert await client.wait_closed() == 1001  # y-websocket reconnects after 1001
        assert await asyncio.to_thread(server.proc.wait, 30) == 0
    finally:
        server.stop()
    assert nbformat.read(path, as_version=4).cells[0].source == \
        "# last edited just before shutdown"
