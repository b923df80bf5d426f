"""The roles authorizer under a real JupyterHub 5: users given access to a server through the
hub's sharing see only what its owner granted them.

The hub (``python -m jupyterhub``, its dummy authenticator, local processes as the hub's own
user, and configurable-http-proxy from ``tests/support/js``) spawns alice's server with
jupyter_ydjango embedded and the roles authorizer. Alice shares her server with bob and carol
through the hub's sharing API, then grants roles on single files and folders through
``/api/ydjango/roles``: bob a viewer of one file, the hub group ``ta`` (carol is in it)
editors of a folder. Each user's hub token is what their browser's login would carry.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daphne_servers import Server, free_port, server_env
from jupyter_servers import EXTENSION_CONFIG, NO_JUPYTEXT

jupyterhub = pytest.importorskip("jupyterhub", reason="jupyterhub is not installed "
                                 "(pip install -e '.[test]')")

#: The token of the test's hub service (admin of users, servers, tokens, shares, groups).
SERVICE_TOKEN = "hub-tests-service-token-0123456789abcdef"
AUTHORIZER = "jupyter_ydjango.jupyter.authorizer.RolesAuthorizer"
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


class Hub:
    """The hub, and requests to it or through its proxy, with a token."""

    def __init__(self, tmp: Path, proxy: Path) -> None:
        self.tmp = tmp
        self.root = tmp / "alice-files"
        (self.root / "course").mkdir(parents=True)
        for name in ("lecture.txt", "answers.txt", "course/week1.txt"):
            (self.root / name).write_text(name)
        (self.root / "lecture.ipynb").write_text(json.dumps(NOTEBOOK))
        config_dir = tmp / "jupyter-config"
        (config_dir / "jupyter_server_config.d").mkdir(parents=True)
        shutil.copy(EXTENSION_CONFIG, config_dir / "jupyter_server_config.d")
        (config_dir / "jupyter_server_config.json").write_text(json.dumps(NO_JUPYTEXT))
        single_user_env = {
            "JUPYTER_CONFIG_DIR": str(config_dir),
            "JUPYTER_DATA_DIR": str(tmp / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "jupyter-runtime"),
            "JUPYTER_PLATFORM_DIRS": "0",
            "YDJANGO_DATA_DIR": str(tmp / "ydjango"),
        }
        (tmp / "ydjango").mkdir()
        config = {
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "proxy": str(proxy),
            "python": sys.executable,
            "root": str(self.root),
            "env": single_user_env,
            "authorizer": AUTHORIZER,
            "token": SERVICE_TOKEN,
            "tmp": str(tmp),
        }
        (tmp / "hub.json").write_text(json.dumps(config))
        (tmp / "jupyterhub_config.py").write_text(HUB_CONFIG)
        self.server = Server(
            [sys.executable, "-m", "jupyterhub", "-f", str(tmp / "jupyterhub_config.py"),
             "--port={port}"],
            server_env(tmp / "hub-ydjango", HUB_SETTINGS=str(tmp / "hub.json")),
            tmp / "hub.log")
        self.wait_for_api()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.port}/{path}"

    def request(self, method: str, path: str, body: Any = None, *,
                token: str = SERVICE_TOKEN) -> tuple[int, Any]:
        """``method`` on ``path`` (of the hub's public URL): (status, JSON body or text)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url(path), data=data, method=method, headers={
            "Authorization": f"token {token}", "Content-Type": "application/json"})
        opener = urllib.request.build_opener(NoRedirects)
        try:
            with opener.open(request, timeout=60) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        try:
            return status, json.loads(payload) if payload else None
        except ValueError:
            return status, payload.decode(errors="replace")

    def wait_for_api(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.request("GET", "hub/api/")[0] != 200:
            assert time.monotonic() < deadline, self.server.log()[-3000:]
            time.sleep(0.2)

    def token_of(self, user: str) -> str:
        status, answer = self.request("POST", f"hub/api/users/{user}/tokens",
                                      {"note": "the tests' login", "expires_in": 3600})
        assert status in (200, 201), (status, answer)
        return answer["token"]

    def start_server(self, user: str, timeout: float = 90) -> None:
        status, answer = self.request("POST", f"hub/api/users/{user}/server")
        assert status in (201, 202), (status, answer)
        deadline = time.monotonic() + timeout
        while True:
            status, model = self.request("GET", f"hub/api/users/{user}")
            if model.get("servers", {}).get("", {}).get("ready"):
                return
            assert time.monotonic() < deadline, self.server.log()[-5000:]
            time.sleep(0.3)

    def stop(self) -> None:
        self.request("DELETE", "hub/api/users/alice/server")
        deadline = time.monotonic() + 30
        while self.request("GET", "hub/api/users/alice")[1].get("servers"):
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.server.stop()


class NoRedirects(urllib.request.HTTPRedirectHandler):
    """Answers as they are: a redirect to the hub's login is an answer, not a page."""

    def redirect_request(self, *args: Any) -> None:
        return None


#: The hub's configuration; the test's values come from the file named by HUB_SETTINGS.
HUB_CONFIG = '''
import json, os
s = json.load(open(os.environ["HUB_SETTINGS"]))
c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = s["hub_port"]
c.JupyterHub.db_url = "sqlite:///" + s["tmp"] + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = s["tmp"] + "/cookie_secret"
c.JupyterHub.pid_file = s["tmp"] + "/hub.pid"
c.ConfigurableHTTPProxy.command = [s["proxy"]]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % s["proxy_api_port"]
c.ConfigurableHTTPProxy.pid_file = s["tmp"] + "/proxy.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {"alice", "bob", "carol", "dave"}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = s["tmp"] + "/home/{username}"
c.Spawner.cmd = [s["python"], "-m", "jupyterhub.singleuser"]
c.Spawner.args = ["--allow-root", "--ServerApp.authorizer_class=" + s["authorizer"],
                  "--RolesAuthorizer.cache_seconds=0"]
c.Spawner.notebook_dir = s["root"]
c.Spawner.environment = s["env"]
c.Spawner.http_timeout = 90
c.Spawner.start_timeout = 90
c.JupyterHub.load_groups = {"ta": {"users": ["carol"]}}
c.JupyterHub.services = [{"name": "tests", "api_token": s["token"]}]
c.JupyterHub.load_roles = [{
    "name": "tests", "services": ["tests"],
    "scopes": ["admin:users", "admin:servers", "tokens", "shares", "admin:groups",
               "list:users"],
}]
'''


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, node_modules: Path) -> Iterator[Hub]:
    proxy = node_modules / ".bin" / "configurable-http-proxy"
    if not proxy.exists():
        pytest.skip(f"{proxy} is missing (npm ci in tests/support/js installs it)")
    tmp = tmp_path_factory.mktemp("hub")
    running = Hub(tmp, proxy)
    try:
        for user in ("alice", "bob", "carol", "dave"):
            status, answer = running.request("POST", f"hub/api/users/{user}")
            assert status in (201, 409), (status, answer)
        running.start_server("alice")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def tokens(hub: Hub) -> dict[str, str]:
    return {user: hub.token_of(user) for user in ("alice", "bob", "carol", "dave")}


def on_alice(hub: Hub, tokens: dict[str, str], user: str, method: str, path: str,
             body: Any = None) -> tuple[int, Any]:
    """A request of ``user``'s to alice's server, through the hub's proxy."""
    return hub.request(method, f"user/alice/{path}", body, token=tokens[user])


def test_shared_users_see_only_what_the_owner_granted(hub: Hub, tokens: dict[str, str]) -> None:
    # (no request of bob's before the share: the server keeps what the hub said of a token
    # for a few minutes; dave, never shared with, shows that the hub keeps others out)
    # alice shares her server through the hub, with bob and carol (a share with the group
    # "ta" does not let its members' tokens in, with JupyterHub 5.5: their hub model lacks
    # the scope); roles then go to users and to hub groups alike
    for body in ({"user": "bob"}, {"user": "carol"}):
        status, answer = hub.request("POST", "hub/api/shares/alice/", body)
        assert status in (200, 201), (status, answer)
    # shared, and with no role yet: in, and nothing to see
    assert on_alice(hub, tokens, "bob", "GET", "api/contents/lecture.txt")[0] == 403
    status, listing = on_alice(hub, tokens, "bob", "GET", "api/contents/")
    assert status == 200 and listing["content"] == [], listing

    # alice grants bob a viewer of one file, the ta group editors of a folder
    status, answer = on_alice(hub, tokens, "alice", "PUT",  # the document is known
                              "api/collaboration/session/lecture.txt",
                              {"format": "text", "type": "file"})
    assert status in (200, 201), (status, answer)
    for path, body in (("lecture.txt", {"subject": "user:bob", "role": "viewer"}),
                       ("course", {"subject": "group:ta", "role": "editor", "folder": True})):
        status, answer = on_alice(hub, tokens, "alice", "PUT", f"api/ydjango/roles/{path}",
                                  body)
        assert status == 200, (status, answer)

    write = {"type": "file", "format": "text", "content": "changed"}
    # bob: reads his file, and nothing else; writes nothing; no terminal, no kernel
    assert on_alice(hub, tokens, "bob", "GET", "api/contents/lecture.txt")[0] == 200
    assert on_alice(hub, tokens, "bob", "GET", "api/contents/answers.txt")[0] == 403
    status, listing = on_alice(hub, tokens, "bob", "GET", "api/contents/")
    assert status == 200 and [e["name"] for e in listing["content"]] == ["lecture.txt"]
    assert on_alice(hub, tokens, "bob", "PUT", "api/contents/lecture.txt", write)[0] == 403
    assert on_alice(hub, tokens, "bob", "POST", "api/terminals")[0] == 403
    assert on_alice(hub, tokens, "bob", "POST", "api/sessions", {
        "path": "lecture.ipynb", "type": "notebook", "name": "",
        "kernel": {"name": "python3"}})[0] == 403

    # carol, through her hub group: writes in the folder, and only there
    assert on_alice(hub, tokens, "carol", "PUT", "api/contents/course/week2.txt",
                    write)[0] in (200, 201)
    assert (hub.root / "course" / "week2.txt").read_text() == "changed"
    assert on_alice(hub, tokens, "carol", "PUT", "api/contents/answers.txt", write)[0] == 403
    assert on_alice(hub, tokens, "carol", "GET", "api/contents/lecture.txt")[0] == 403

    # dave, not shared with: kept out by the hub
    assert on_alice(hub, tokens, "dave", "GET", "api/contents/course/week1.txt")[0] in (302, 403)
    # only alice manages roles
    assert on_alice(hub, tokens, "carol", "PUT", "api/ydjango/roles/course", {
        "subject": "user:carol", "role": "runner", "folder": True})[0] == 403

    # alice herself has every right on her server
    assert on_alice(hub, tokens, "alice", "GET", "api/contents/answers.txt")[0] == 200
    status, terminal = on_alice(hub, tokens, "alice", "POST", "api/terminals")
    assert status == 200, (status, terminal)
    on_alice(hub, tokens, "alice", "DELETE", f"api/terminals/{terminal['name']}")
