"""A Django Channels service process serving a notebook directory, and its HTTP API."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from daphne_servers import Server, migrate, serve_command, server_env
from notebook_client import DocClient

NOTEBOOK = {"format": "json", "type": "notebook"}


class DocServer:
    """``python -m jupyter_ydjango serve`` on ``root``, with a data directory of its own.

    Timings are short (save delay, file polling) so that tests run quickly; ``env`` overrides.
    """

    def __init__(self, tmp: Path, root: Path, name: str = "server", **env: str) -> None:
        self.tmp, self.root, self.name = tmp, root, name
        self.env = server_env(tmp / "data", **{
            "YDJANGO_NOTEBOOK_DIR": str(root),
            "YDJANGO_ALLOW_ANONYMOUS": "1",
            "YDJANGO_SAVE_DELAY": "0.2",
            "YDJANGO_FILE_POLL_INTERVAL": "0.2",
            "YDJANGO_ROOM_UNLOAD_DELAY": "1",
            **env,
        })
        (tmp / "data").mkdir(exist_ok=True)
        migrate(self.env)
        self.server: Server | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart) the process."""
        self.server = Server([*serve_command(), "--no-migrate"], self.env,
                             self.tmp / f"{self.name}.log")

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    def log(self) -> str:
        assert self.server is not None
        return self.server.log()

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """An HTTP request; ``(status, JSON body or None)``."""
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path}", data=data,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else None
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def session(self, path: str, kind: dict[str, str] = NOTEBOOK,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
        """PUT the session of ``path``; its JSON (asserting success)."""
        status, body = self.request("PUT", f"api/collaboration/session/{path}", kind, headers)
        assert status in (200, 201), (status, body)
        return body

    def room_url(self, session: dict[str, Any], session_id: str | None = None) -> str:
        room = f"{session['format']}:{session['type']}:{session['fileId']}"
        sid = session["sessionId"] if session_id is None else session_id
        return f"ws://127.0.0.1:{self.port}/api/collaboration/room/{room}?sessionId={sid}"

    async def open(self, path: str, kind: dict[str, str] = NOTEBOOK, **kwargs: Any) -> DocClient:
        """Open ``path`` as JupyterLab does: session request, then the room's websocket."""
        session = self.session(path, kind)
        return await DocClient.open(self.room_url(session),
                                    "notebook" if kind["type"] == "notebook" else "file", **kwargs)

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
