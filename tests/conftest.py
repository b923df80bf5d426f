"""Shared pytest fixtures: node Yjs clients and real server processes.

The tests are laid out by what they run: ``unit/`` (in this process, one folder per
subpackage), ``service/`` (daphne processes of the Django side), ``jupyter/`` (Jupyter
servers with the extension), ``browser/`` (JupyterLab in Chromium); each folder is also a
marker (``pytest -m unit``). The clients, servers and fixtures they share are in
``support/``, on ``sys.path`` here and on the ``PYTHONPATH`` of the servers the tests start.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest

sys.path.insert(0, str(Path(__file__).parent / "support"))

from daphne_servers import (
    TEST_MAX_MESSAGE_SIZE,
    Server,
    daphne_command,
    migrate,
    serve_command,
    server_env,
)
from yjs_client import JS_DIR, NodeDriver

#: The folders of the tests, each a marker of its tests.
GROUPS = ("unit", "service", "jupyter", "browser")

#: The modules whose outcome depends on the Python version or on which CRDT engines are
#: installed (marker ``interpreter``; ``.ci/run`` runs them again on Python 3.13, where y-py
#: does not install). The rest runs the same code paths on any supported Python.
INTERPRETER_DEPENDENT = {
    "unit/protocol/test_yutils.py": "the wire format on each installed engine",
    "unit/protocol/test_yutils_pycrdt.py": "pycrdt's own encoders and decoders",
    "unit/protocol/test_yclient.py": "pycrdt against node yjs, byte for byte",
    "unit/rooms/test_rooms.py": "the engines' client ids and state vectors, asyncio rooms",
    "unit/rooms/test_room_shutdown.py": "asyncio's loop and task shutdown",
    "unit/formats/test_notebook.py": "the notebook schema built by pycrdt",
    "unit/formats/test_conversions.py": "worker processes: start methods, signals, pipes",
    "unit/store/test_history.py": "pycrdt's update decoding",
    "service/test_seed_example.py": "the seed API on each installed engine",
    "service/test_consumer.py": "the seed consumer on pycrdt alone where y-py is missing",
    "service/test_client_ids.py": "53-bit and 32-bit client ids end to end",
    "service/test_heap.py": "the garbage collector's freeze",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        relative = item.path.relative_to(tests_dir)
        if relative.parts[0] in GROUPS:
            item.add_marker(getattr(pytest.mark, relative.parts[0]))
        if relative.as_posix() in INTERPRETER_DEPENDENT:
            item.add_marker(pytest.mark.interpreter)


def pytest_configure(config: pytest.Config) -> None:
    # In-process tests use the embedded settings, in a private data directory.
    os.environ.setdefault("YDJANGO_DATA_DIR", tempfile.mkdtemp(prefix="ydjango-tests-"))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jupyter_ydjango.settings")
    django.setup()


# --- node Yjs clients ---

_JS_PACKAGES = ("yjs", "y-websocket", "y-protocols", "lib0", "ws", "@jupyter/ydoc")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """``tests/support/js/node_modules``, installed with ``npm ci`` if needed.

    Skips when node or npm is missing; fails loudly when ``npm ci`` fails.
    """
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"node/npm not available: {', '.join(missing)} not found on PATH")
    modules = JS_DIR / "node_modules"
    if not all((modules / pkg / "package.json").is_file() for pkg in _JS_PACKAGES):
        proc = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"`npm ci` in {JS_DIR} failed with exit code {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}",
                pytrace=False,
            )
    return modules


@pytest.fixture
async def ydriver(node_modules: Path) -> AsyncIterator[NodeDriver]:
    """A started :class:`yclient.NodeDriver`; shut down (all clients closed) afterwards."""
    driver = NodeDriver()
    await driver.start()
    try:
        yield driver
    finally:
        await driver.shutdown()


# --- the browser ---


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """Chromium (Debian's, through playwright), one per test module (playwright's
    synchronous API must not outlive the module into asyncio tests)."""
    from browser import CHROMIUM, CHROMIUM_ARGS
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def sign_in(lab: Any, chromium: Any,
            request: pytest.FixtureRequest) -> Iterator[Callable[[str], Any]]:
    """``sign_in(token)``: a new signed-in user's page on the test module's ``lab`` server
    (see :func:`browser.signed_in_pages`); on failure, screenshots, consoles and the log are
    kept."""
    from browser import signed_in_pages

    failed_before = request.session.testsfailed
    # The call's report is in when the fixture is torn down: a failure of this test counts.
    with signed_in_pages(lab, chromium, request.node.name,
                         lambda: request.session.testsfailed > failed_before) as new_page:
        yield new_page


# --- servers ---

def redis_running() -> bool:
    """Whether Redis answers on 127.0.0.1:6379."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", 6379)) == 0


def _serve(tmp: Path, name: str, **env: str) -> Server:
    return Server([*serve_command(), "--no-migrate"], server_env(tmp, **env), tmp / f"{name}.log")


@pytest.fixture(scope="module")
def embedded_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m jupyter_ydjango serve`` on the embedded defaults (in-memory layer)."""
    tmp = tmp_path_factory.mktemp("embedded")
    env = {"YDJANGO_ALLOW_ANONYMOUS": "1",
           "YDJANGO_MAX_MESSAGE_SIZE": str(TEST_MAX_MESSAGE_SIZE)}
    migrate(server_env(tmp, **env))
    server = _serve(tmp, "server", **env)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped application without ``YDJANGO_ALLOW_ANONYMOUS``."""
    tmp = tmp_path_factory.mktemp("private")
    migrate(server_env(tmp))
    server = _serve(tmp, "server")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """Two server processes sharing rooms through the channels_redis layer."""
    if not redis_running():
        pytest.skip("Redis is not running on 127.0.0.1:6379 (start it to run these tests)")
    tmp = tmp_path_factory.mktemp("redis")
    env = {"YDJANGO_ALLOW_ANONYMOUS": "1", "YDJANGO_REDIS_URL": "redis://127.0.0.1:6379/0",
           "YDJANGO_RELAY_HEARTBEAT": "1"}
    migrate(server_env(tmp, **env))
    servers = [_serve(tmp, f"server{i}", **env) for i in range(2)]
    yield servers
    for server in servers:
        server.stop()


#: Settings of ``tests/support/seedapp``: the seed's example consumer and a read-only consumer.
SEEDAPP_SETTINGS = "seedapp.settings"


@pytest.fixture(scope="module")
def seedapp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """daphne serving ``seedapp.asgi:application`` on its own SQLite database."""
    tmp = tmp_path_factory.mktemp("seedapp")
    env = server_env(tmp, DJANGO_SETTINGS_MODULE=SEEDAPP_SETTINGS)
    migrate(env, SEEDAPP_SETTINGS)
    server = Server(daphne_command("seedapp.asgi:application"), env, tmp / "daphne.log")
    yield server
    server.stop()
