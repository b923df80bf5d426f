"""A Jupyter server in remote mode and the Django service behind it: ``python -m jupyter_ydjango
serve`` (daphne) on the same notebook directory, sharing a secret; the Jupyter server's users
are those of :mod:`jupyter_auth` (``reader`` may only read)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

from daphne_servers import Server, migrate, serve_command, server_env
from jupyter_servers import TOKEN, JupyterServer
from notebook_client import DocClient

#: The secret the Jupyter server signs identities with, and the service checks them with.
SECRET = "remote-tests-shared-secret-of-32-bytes"


class Remote:
    """The Django service and the Jupyter server in front of it."""

    def __init__(self, tmp: Path, *, jupyter_args: tuple[str, ...] = (),
                 service_args: tuple[str, ...] = (),
                 authorizer: str = "jupyter_auth.ReadOnlyAuthorizer", **env: str) -> None:
        """``jupyter_args``: more options of the Jupyter server; ``service_args``: of
        ``serve`` (such as ``--workers 2``); ``authorizer``: the Jupyter server's authorizer
        class; ``env``: more environment variables of both servers."""
        self.jupyter_args = jupyter_args
        self.authorizer = authorizer
        self.service_args = service_args
        self.extra_env = env
        self.root = tmp / "root"
        self.root.mkdir()
        self.env = server_env(tmp / "service", YDJANGO_NOTEBOOK_DIR=str(self.root),
                              YDJANGO_IDENTITY_SECRET=SECRET, YDJANGO_SAVE_DELAY="0.2",
                              YDJANGO_FILE_POLL_INTERVAL="0.2", **env)
        (tmp / "service").mkdir()
        migrate(self.env)
        self.tmp = tmp
        self.service = self.start_service()
        self.jupyter = self.another_jupyter("jupyter")

    def another_jupyter(self, name: str) -> JupyterServer:
        """A Jupyter server in front of the service (the first is :attr:`jupyter`)."""
        return JupyterServer(self.tmp / name, self.root, args=(
            f"--YDjango.remote_url=http://127.0.0.1:{self.service.port}",
            f"--YDjango.shared_secret={SECRET}",
            "--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
            f"--ServerApp.authorizer_class={self.authorizer}",
            *self.jupyter_args,
        ), **self.extra_env)

    def start_service(self) -> Server:
        return Server([*serve_command(), "--no-migrate", *self.service_args], self.env,
                      self.tmp / "service.log")

    def direct(self, method: str, path: str, body: Any = None,
               headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """A request straight to the service (no Jupyter server in between)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=30)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body),
                         headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        return response.status, json.loads(payload) if payload else None


async def open_notebook(jupyter: JupyterServer, path: str, token: str = TOKEN) -> DocClient:
    """A notebook opened through ``jupyter`` as JupyterLab opens it (session, then room)."""
    status, info = jupyter.session(path, token=token)
    assert status in (200, 201), (status, info)
    return await DocClient.open(jupyter.room_url(info, token=token))


def append_source(model: Any, index: int, text: str) -> None:
    """Type ``text`` at the end of cell ``index``'s source."""
    source = model.ycells[index]["source"]
    source.insert(len(source), text)

