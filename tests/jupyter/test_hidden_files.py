"""Hidden files are not served, as Jupyter's contents API does not serve them.

Jupyter answers 404 for a hidden file (``.env``, ``.secret.txt``, anything in ``.git/``)
unless ``ContentsManager.allow_hidden`` is set: no session, no room, no content, for any
user, readers included. A real Jupyter server (embedded Django side) and a real service.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nbformat
from django_service import DocServer
from jupyter_servers import JupyterServer
from nbformat.v4 import new_code_cell, new_notebook
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

TEXT_FILE = {"format": "text", "type": "file"}
NOTEBOOK = {"format": "json", "type": "notebook"}


def write_files(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / ".secret.txt").write_text("the password")
    (root / ".hidden").mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell("token = 1")]), root / ".hidden" / "n.ipynb")
    (root / "visible.txt").write_text("hello")


async def test_jupyter_serves_no_hidden_file_unless_it_allows_them(tmp_path: Path) -> None:
    for allow in (False, True):
        root = tmp_path / f"root-{allow}"
        write_files(root)
        args = ("--ContentsManager.allow_hidden=True",) if allow else ()
        server = JupyterServer(tmp_path / f"server-{allow}", root, args=args)
        try:
            for path, kind in ((".secret.txt", TEXT_FILE), (".hidden/n.ipynb", NOTEBOOK),
                               ("visible.txt", TEXT_FILE)):
                contents, _ = server.request("GET", f"api/contents/{path}")
                status, body = server.session(path, body=kind)
                expected = 404 if path.startswith(".") and not allow else 201
                assert contents == (404 if expected == 404 else 200), (path, contents)
                assert status == expected, (allow, path, status, body)
        finally:
            server.stop()


async def test_a_hidden_file_known_before_is_not_sent(tmp_path: Path) -> None:
    """A document made while hidden files were served: once they are not, its room sends
    nothing of it (the file id of a room is no secret)."""
    root = tmp_path / "root"
    write_files(root)
    server = DocServer(tmp_path, root, YDJANGO_ALLOW_HIDDEN="1")
    try:
        session = server.session(".secret.txt", TEXT_FILE)
        server.stop()
        server.env["YDJANGO_ALLOW_HIDDEN"] = ""
        server.start()
        status, _ = server.request("PUT", "api/collaboration/session/.secret.txt", TEXT_FILE)
        assert status == 404
        received = []
        async with connect(server.room_url(session)) as ws:
            try:
                while True:
                    received.append(await asyncio.wait_for(ws.recv(), 20))
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else None
        assert code == 4404
        assert not any(b"password" in bytes(frame) for frame in received), received
        status, _ = server.request("GET", "api/collaboration/timeline/.secret.txt"
                                          "?format=text&type=file")
        assert status == 404
    finally:
        server.stop()
