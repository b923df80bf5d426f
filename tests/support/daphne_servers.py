"""Real server processes for the tests: daphne serving an ASGI application."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: ``tests/support``: the helpers, on the ``PYTHONPATH`` of the servers the tests start.
SUPPORT_DIR = Path(__file__).parent
PROJECT_DIR = SUPPORT_DIR.parent.parent

#: The frame size limit of the test servers (small, so the oversized-frame test is cheap).
TEST_MAX_MESSAGE_SIZE = 2_000_000


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a Unix socket (``path``), such as a worker's of ``serve --workers N``."""

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Wait until something listens on ``port``; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s")


def server_env(data_dir: Path, **overrides: str) -> dict[str, str]:
    """The environment of a test server: embedded settings in a private data directory."""
    env = dict(os.environ)
    env.update({
        "YDJANGO_DATA_DIR": str(data_dir),
        "YDJANGO_SECRET_KEY": "tests-only-secret-key-with-enough-characters-to-be-valid",
        "YDJANGO_LOG_LEVEL": "INFO",
        "PYTHONPATH": os.pathsep.join([str(SUPPORT_DIR), env.get("PYTHONPATH", "")]),
        "PYTHONUNBUFFERED": "1",
    })
    env.update(overrides)
    return env


class Server:
    """A server process on a free port, its output kept in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = env
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (kept open while the server runs)
        argv = [arg.replace("{port}", str(self.port)) for arg in args]
        self.proc = subprocess.Popen(argv, env=env, cwd=PROJECT_DIR, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.port, self.proc)
        except RuntimeError:
            output = self.log()
            self.stop()
            raise RuntimeError(f"server failed to start:\n{output}") from None

    @property
    def ws_url(self) -> str:
        """Base websocket URL of the rooms (``{ws_url}/{room}``)."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http_url(self) -> str:
        """Base HTTP URL."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the server printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the server."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def migrate(env: dict[str, str], settings: str = "jupyter_ydjango.settings") -> None:
    """Apply the migrations of ``settings`` to the test database."""
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
        env={**env, "DJANGO_SETTINGS_MODULE": settings}, cwd=PROJECT_DIR, check=True,
    )


def serve_command() -> list[str]:
    """The documented way to run the service: ``python -m jupyter_ydjango serve``."""
    return [sys.executable, "-m", "jupyter_ydjango", "serve", "--port", "{port}"]


def daphne_command(application: str) -> list[str]:
    """Plain daphne on another ASGI application."""
    return [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}",
            "--websocket_timeout", "-1", application]
