"""Real Jupyter server processes with the jupyter_ydjango extension, and their HTTP API."""

from __future__ import annotations

import http.client
import json
import shutil
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

from daphne_servers import PROJECT_DIR, Server, server_env

#: The token of the test servers' default user.
TOKEN = "jupyter-tests-token"
#: The shipped config file that enables the extension.
EXTENSION_CONFIG = (
    PROJECT_DIR / "jupyter-config" / "jupyter_server_config.d" / "jupyter_ydjango.json"
)
NOTEBOOK = {"format": "json", "type": "notebook"}
#: The user config that keeps jupytext's server extension (and contents manager) off (a
#: file of ``jupyter_server_config.d`` does not outweigh the one jupytext installs).
NO_JUPYTEXT = {"ServerApp": {"jpserver_extensions": {"jupyterlab_jupytext": False}}}


def as_user(user: str) -> list[str]:
    """The command prefix that runs a command as ``user`` (see :class:`JupyterServer`)."""
    return ["setpriv", f"--reuid={user}", f"--regid={user_group(user)}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search", "--"]


def user_group(user: str) -> int:
    """The primary group of ``user``."""
    import pwd

    return pwd.getpwnam(user).pw_gid


def why_not_as_user(user: str) -> str:
    """Why a command cannot run as ``user`` here (empty if it can)."""
    import os
    import subprocess

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return f"needs root and setpriv to run a server as {user}"
    probe = subprocess.run([*as_user(user), sys.executable, "-c", "import jupyter_server"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return f"{user} cannot run {sys.executable} here ({probe.stderr.strip()[:200]})"
    return ""


class JupyterServer:
    """``python -m jupyter_server`` serving ``root``, with jupyter_ydjango enabled by its shipped
    config file in a private Jupyter config directory.

    Everything the server writes (Jupyter data and runtime, the embedded SQLite database) stays
    under ``tmp``. ``args`` are extra command-line options (``--YDjango.remote_url=...``).
    jupytext's extension, which replaces the server's contents manager, is off unless
    ``jupytext``. ``run_as``: the user the server runs as, if not this one (``setpriv``: that
    user's permissions, except that it may read and search every directory, so that it runs
    from this test environment wherever that is, as under a home only root may enter; it may
    not write what its user may not).
    """

    def __init__(self, tmp: Path, root: Path, *, base_url: str = "/", args: tuple[str, ...] = (),
                 name: str = "jupyter", config: dict[str, Any] | None = None,
                 jupytext: bool = False, run_as: str = "", **env: str) -> None:
        self.tmp, self.root, self.base_url = tmp, root, base_url
        self.config_dir = tmp / "jupyter-config"
        config_d = self.config_dir / "jupyter_server_config.d"
        config_d.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXTENSION_CONFIG, config_d)
        if not jupytext:  # installed with the test extras, it enables itself everywhere
            (self.config_dir / "jupyter_server_config.json").write_text(json.dumps(NO_JUPYTEXT))
        for filename, content in (config or {}).items():  # more config files, as installed
            (config_d / filename).write_text(json.dumps(content))
        self.env = server_env(tmp / "ydjango", **{
            "JUPYTER_CONFIG_DIR": str(self.config_dir),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "0",
            "YDJANGO_FILE_POLL_INTERVAL": "0.2",
            **env,
        })
        (tmp / "ydjango").mkdir(exist_ok=True)
        if run_as:  # everything under tmp is the user's, the root and its files included
            for path in (tmp, *tmp.rglob("*")):
                shutil.chown(path, run_as, user_group(run_as))
        self.args = [
            *(as_user(run_as) if run_as else []),
            sys.executable, "-m", "jupyter_server",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--allow-root", "--no-browser",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={root}",
            f"--ServerApp.base_url={base_url}",
            *args,
        ]
        self.name = name
        self.server: Server | None = None
        self.start()

    def start(self) -> None:
        """Start (or restart) the process."""
        self.server = Server(self.args, self.env, self.tmp / f"{self.name}.log")

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port

    @property
    def proc(self) -> Any:
        assert self.server is not None
        return self.server.proc

    def log(self) -> str:
        assert self.server is not None
        return self.server.log()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    # --- API --------------------------------------------------------------------------------

    def url(self, path: str, *, ws: bool = False) -> str:
        """Absolute URL of ``path`` (relative to the base URL)."""
        scheme = "ws" if ws else "http"
        return f"{scheme}://127.0.0.1:{self.port}{self.base_url}{path}"

    def request(self, method: str, path: str, body: Any = None, *, token: str | None = TOKEN,
                raw: bool = False, headers: dict[str, str] | None = None,
                ) -> tuple[int, Any]:
        """``method`` on ``{base_url}{path}`` (sent as is, not normalised): (status, JSON body
        or bytes if it is not JSON)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"token {token}"
        data = body if raw or body is None else json.dumps(body).encode()
        if data is not None:
            all_headers.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, f"{self.base_url}{path}", body=data, headers=all_headers)
            response = conn.getresponse()
            payload = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(payload)
        except ValueError:
            return response.status, payload

    def session(self, path: str, *, token: str | None = TOKEN, body: Any = None) -> tuple[int, Any]:
        """``PUT api/collaboration/session/{path}`` (``path`` is percent-encoded here)."""
        return self.request("PUT", f"api/collaboration/session/{quote(path)}",
                            NOTEBOOK if body is None else body, token=token)

    def room_url(self, info: dict[str, Any], *, token: str | None = TOKEN,
                 session_id: str | None = None) -> str:
        """The websocket URL of the room of a session answer."""
        room = f"{info['format']}:{info['type']}:{info['fileId']}"
        query = f"sessionId={quote(session_id if session_id is not None else info['sessionId'])}"
        if token:
            query += f"&token={token}"
        return self.url(f"api/collaboration/room/{room}?{query}", ws=True)
