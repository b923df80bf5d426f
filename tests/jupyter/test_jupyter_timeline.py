"""The timeline and fork API through a real Jupyter server, embedded and remote.

The requests are those JupyterLab's stock frontend makes (jupyter-docprovider 3): the room id
percent-encoded, ``&&`` between query parameters, the timeline's session request for
``/{path}`` encoded once more. Users come from :mod:`jupyter_auth`: ``writer`` and
``reader`` (who may only read).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import nbformat
import pytest
from daphne_servers import Server, migrate, serve_command, server_env
from jupyter_servers import JupyterServer
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_client import DocClient

GAP = "0.6"
SECRET = "timeline-remote-secret-of-at-least-32-bytes"
AUTH_ARGS = ("--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
             "--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer")
WRITER, EDITOR, READER = "writer-token", "editor-token", "reader-token"
#: The tests' server extension that records jupyter-collaboration's events.
PROBE = {"ServerApp": {"jpserver_extensions": {"collab_probe": True}}}


class Deployment:
    """A Jupyter server under ``/jp/`` serving ``root``, with the Django side embedded or
    as a separate service."""

    def __init__(self, tmp: Path, mode: str) -> None:
        self.root = tmp / "root"
        self.root.mkdir()
        self.service: Server | None = None
        args: tuple[str, ...] = AUTH_ARGS
        if mode == "remote":
            env = server_env(tmp / "service", YDJANGO_NOTEBOOK_DIR=str(self.root),
                             YDJANGO_IDENTITY_SECRET=SECRET, YDJANGO_SAVE_DELAY="0.2",
                             YDJANGO_FILE_POLL_INTERVAL="0.2", YDJANGO_HISTORY_BURST_GAP=GAP)
            (tmp / "service").mkdir()
            migrate(env)
            self.service = Server([*serve_command(), "--no-migrate"], env, tmp / "service.log")
            args += (f"--YDjango.remote_url=http://127.0.0.1:{self.service.port}",
                     f"--YDjango.shared_secret={SECRET}")
        self.jupyter = JupyterServer(tmp / "jupyter", self.root, base_url="/jp/", args=args,
                                     config={"probe.json": PROBE}, YDJANGO_SAVE_DELAY="0.2",
                                     YDJANGO_HISTORY_BURST_GAP=GAP)

    def stop(self) -> None:
        self.jupyter.stop()
        if self.service is not None:
            self.service.stop()

    def api(self, method: str, path: str, body: Any = None, token: str = WRITER
            ) -> tuple[int, Any]:
        return self.jupyter.request(method, path, body, token=token)

    def ws(self, room: str, session_id: str, token: str = WRITER) -> str:
        return self.jupyter.url(
            f"api/collaboration/room/{room}?sessionId={session_id}&token={token}", ws=True)


@pytest.fixture(scope="module", params=["embedded", "remote"])
def deployment(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp(request.param), request.param)
    yield deployment
    deployment.stop()


def sources(client: DocClient) -> list[str]:
    return [cell["source"] for cell in client.model.get()["cells"]]


async def test_timeline_restore_and_forks_through_jupyter(deployment: Deployment) -> None:
    name = "my notebook.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Title", id="md"),
                                       new_code_cell("x = 1", id="code")]),
                   deployment.root / name)
    status, session = deployment.api("PUT", f"api/collaboration/session/{quote(name)}",
                                     {"format": "json", "type": "notebook"})
    assert status in (200, 201), session
    # what the stock timeline asks for: "/" + the path as its URL shows it, encoded again
    status, again = deployment.api(
        "PUT", f"api/collaboration/session/{quote('/' + quote(name), safe='')}",
        {"format": "json", "type": "notebook"})
    assert status == 200 and again["fileId"] == session["fileId"], again
    room = f"json:notebook:{session['fileId']}"
    editor = await DocClient.open(deployment.ws(room, session["sessionId"]))
    source = editor.model.ycells[1]["source"]
    for text in (" + a", " + b"):
        source.insert(len(source), text)
        assert await editor.save() == "success"
        await asyncio.sleep(float(GAP) * 2)

    timeline = f"api/collaboration/timeline/{quote(name)}?format=json&&type=notebook"
    lines = {}
    for token in (READER, WRITER):
        status, lines[token] = deployment.api("GET", timeline, token=token)
        assert status == 200, lines[token]
        assert len(lines[token]["timestamps"]) == 3 and lines[token]["roomId"] == room
    assert lines[READER]["forkRoom"] != lines[WRITER]["forkRoom"], "a copy each"
    await editor.close()

    def undo_of(token: str) -> str:
        return (f"api/collaboration/undo_redo/{quote(room, safe='')}?action={{}}&&steps={{}}"
                f"&&forkRoom={lines[token]['forkRoom']}")

    # the reader moves their own copy, not the writer's, and restores nothing
    reader_copy = await DocClient.open(deployment.ws(lines[READER]["forkRoom"],
                                                     lines[READER]["sessionId"], token=READER))
    status, moved = deployment.api("PUT", undo_of(READER).format("undo", 1), token=READER)
    assert status == 200 and moved["status"] == "undone", moved
    await reader_copy.wait_for(lambda m: m.get()["cells"][1]["source"] == "x = 1 + a")
    status, _ = deployment.api("PUT", undo_of(WRITER).format("undo", 1), token=READER)
    assert status == 403
    status, _ = deployment.api("PUT", undo_of(READER).format("restore", 0), token=READER)
    assert status == 403
    await reader_copy.close()
    line = lines[WRITER]
    copy = await DocClient.open(deployment.ws(line["forkRoom"], line["sessionId"]),
                                doc=editor.doc)
    undo = undo_of(WRITER)
    status, moved = deployment.api("PUT", undo.format("undo", 2))
    assert status == 200 and moved["status"] == "undone", moved
    await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == "x = 1")
    status, restored = deployment.api("PUT", undo.format("restore", 0))
    assert status == 200 and restored["code"] == 200, restored
    back = await DocClient.open(deployment.ws(room, session["sessionId"]), doc=copy.doc)
    assert sources(back) == ["# Title", "x = 1"]
    assert await back.save() == "success"
    assert [c.source for c in nbformat.read(deployment.root / name, as_version=4).cells] == [
        "# Title", "x = 1"]

    forks = f"api/collaboration/fork/{quote(room, safe='')}"
    status, _ = deployment.api("PUT", forks, {"title": "no"}, token=READER)
    assert status == 403
    status, made = deployment.api("PUT", forks, {"synchronize": True, "title": "idea",
                                                 "description": ""})
    assert status == 201, made
    status, listed = deployment.api("GET", forks, token=READER)
    assert status == 200 and list(listed) == [made["fork_roomid"]]
    fork = await DocClient.open(deployment.ws(made["fork_roomid"], made["sessionId"]))
    fork.model.ycells[0]["source"].insert(7, " of the fork")
    assert await fork.save() == "success"
    deleting = f"api/collaboration/fork/{made['fork_roomid']}?merge=true"
    status, _ = deployment.api("DELETE", deleting, token=READER)
    assert status == 403
    status, _ = deployment.api("DELETE", deleting)
    assert status == 200
    await back.wait_for(lambda m: m.get()["cells"][0]["source"] == "# Title of the fork")
    assert await fork.wait_closed() == 4404
    status, _ = deployment.api("DELETE", deleting)
    assert status == 404
    # announced to other server extensions as jupyter-collaboration announces them
    status, events = deployment.api("GET", "probe/events")
    assert status == 200
    forks_seen = [(e["action"], e["fork_roomid"], e["username"], e["fork_info"]["title"])
                  for e in events if e["schema"] == "fork"]
    assert forks_seen == [("create", made["fork_roomid"], "writer", "idea"),
                          ("delete", made["fork_roomid"], "writer", "idea")]
    await back.close()


async def test_each_point_says_who_made_it(deployment: Deployment) -> None:
    """Two users typing in one burst, then each alone in a burst of their own, then a
    restore: each point of the timeline names who made it, in the timeline's order."""
    name = "authors.ipynb"
    nbformat.write(new_notebook(cells=[new_markdown_cell("# Title", id="md"),
                                       new_code_cell("x = 1", id="code")]),
                   deployment.root / name)
    status, session = deployment.api("PUT", f"api/collaboration/session/{quote(name)}",
                                     {"format": "json", "type": "notebook"})
    assert status in (200, 201), session
    room = f"json:notebook:{session['fileId']}"
    writer = await DocClient.open(deployment.ws(room, session["sessionId"]))
    editor = await DocClient.open(deployment.ws(room, session["sessionId"], token=EDITOR))

    typed = ["x = 1"]

    async def type_in(*clients: DocClient) -> None:
        for client in clients:  # each types once it sees what was typed before
            await client.wait_for(lambda m: m.get()["cells"][1]["source"] == typed[0])
            source = client.model.ycells[1]["source"]
            text = " + w" if client is writer else " + e"
            source.insert(len(source), text)
            typed[0] += text
            await client.flush()
        for client in clients:
            assert await client.save() == "success"
        await asyncio.sleep(float(GAP) * 2)

    await type_in(writer, editor)  # one burst, both
    await type_in(writer)
    await type_in(editor)
    await writer.wait_for(lambda m: m.get()["cells"][1]["source"] == "x = 1 + w + e + w + e")
    authors = f"api/ydjango/history/{quote(name)}?format=json&&type=notebook"
    status, history = deployment.api("GET", authors, token=READER)
    assert status == 200, history
    timeline = f"api/collaboration/timeline/{quote(name)}?format=json&&type=notebook"
    status, line = deployment.api("GET", timeline)
    assert status == 200, line
    assert history["roomId"] == room and history["path"] == name
    assert [p["timestamp"] for p in history["points"]] == pytest.approx(line["timestamps"])
    assert [[a["username"] for a in p["authors"]] for p in history["points"]] == [
        [], ["editor", "writer"], ["writer"], ["editor"]]
    assert history["points"][1]["authors"] == [
        {"username": "editor", "name": "Editor", "display_name": "Editor"},
        {"username": "writer", "name": "Writer", "display_name": "Writer"}]

    # the editor restores the point after the first burst (in a copy of their own): a point
    # of the editor's
    status, line = deployment.api("GET", timeline, token=EDITOR)
    assert status == 200, line
    copy = await DocClient.open(deployment.ws(line["forkRoom"], line["sessionId"],
                                              token=EDITOR))
    undo = (f"api/collaboration/undo_redo/{quote(room, safe='')}?action={{}}&&steps={{}}"
            f"&&forkRoom={line['forkRoom']}")
    status, _ = deployment.api("PUT", undo.format("undo", 2), token=EDITOR)
    assert status == 200
    await copy.wait_for(lambda m: m.get()["cells"][1]["source"] == "x = 1 + w + e")
    status, restored = deployment.api("PUT", undo.format("restore", 0), token=EDITOR)
    assert status == 200 and restored["code"] == 200, restored
    await writer.wait_for(lambda m: m.get()["cells"][1]["source"] == "x = 1 + w + e")
    await copy.close()
    await asyncio.sleep(float(GAP) * 2)
    status, history = deployment.api("GET", authors)
    assert status == 200, history
    assert [[a["username"] for a in p["authors"]] for p in history["points"]] == [
        [], ["editor", "writer"], ["writer"], ["editor"], ["editor"]]
    status, missing = deployment.api("GET", "api/ydjango/history/nothing.ipynb?format=json"
                                            "&&type=notebook")
    assert status == 404, missing
    status, _ = deployment.api("GET", authors, token="nobody-token")
    assert status == 403
    await writer.close()
    await editor.close()
