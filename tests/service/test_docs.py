"""The documentation that is generated from the code is up to date and complete."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from daphne_servers import PROJECT_DIR, Server, daphne_command
from frame_client import RawClient
from websockets.exceptions import InvalidStatus

from jupyter_ydjango.conf import ENVIRONMENT, SETTINGS


def load_generator():
    path = PROJECT_DIR / "docs" / "generate_reference.py"
    spec = importlib.util.spec_from_file_location("generate_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_up_to_date() -> None:
    generator = load_generator()
    current = generator.TARGET.read_text()
    assert current == generator.render(), (
        "docs/configuration.md is out of date: run python docs/generate_reference.py")


def test_every_environment_variable_is_documented() -> None:
    """Each ``YDJANGO_*`` name the embedded settings read is a setting or in ENVIRONMENT, so
    that the reference (and ``python -m jupyter_ydjango options``) lists it."""
    source = (PROJECT_DIR / "jupyter_ydjango" / "project" / "settings.py").read_text()
    names = {
        node.value for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        and re.fullmatch(r"YDJANGO_[A-Z_]+", node.value)
    }
    assert names, "no YDJANGO_* variable found in settings.py"
    undocumented = names - set(SETTINGS) - set(ENVIRONMENT)
    assert not undocumented, f"add these to jupyter_ydjango.conf.ENVIRONMENT: {undocumented}"


def test_deploying_guide_links_the_reference() -> None:
    text = (PROJECT_DIR / "docs" / "deploying.md").read_text()
    assert "configuration.md" in text


def test_every_name_the_documentation_gives_exists() -> None:
    """Each dotted ``jupyter_ydjango...`` name in the README and docs imports (a module, or a
    name in one): a page must not send a reader to a module that moved."""
    pages = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md"))]
    names = {name for page in pages
             for name in re.findall(r"jupyter_ydjango(?:\.[A-Za-z_][A-Za-z0-9_]*)+",
                                    page.read_text())}
    assert names
    missing = []
    for name in sorted(names):
        parts = name.split(".")
        for split in range(len(parts), 0, -1):
            try:
                found = importlib.import_module(".".join(parts[:split]))
                break
            except ImportError:
                continue
        for part in parts[split:]:
            found = getattr(found, part, None)
        if found is None:
            missing.append(name)
    assert not missing, f"the documentation names what does not exist: {missing}"


# --- the Django project of docs/deploying.md, built from the page and run -------------------

EXAMPLE_SECTION = "## Adding the consumer to an existing Django project"
EXAMPLE_FILES = {"mysite/settings.py", "mysite/asgi.py", "mysite/urls.py",
                 "notes/consumers.py", "notes/routing.py", "notes/views.py"}
#: Prints ``sessionid=<key>`` of a new logged-in user.
LOGIN_SCRIPT = """
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

client = Client()
client.force_login(get_user_model().objects.create_user("ada"))
print(settings.SESSION_COOKIE_NAME + "=" + client.cookies[settings.SESSION_COOKIE_NAME].value)
"""
CSRF_TOKEN = "docsexample" + "x" * 21  # 32 characters: a valid unmasked CSRF secret


def example_files() -> dict[str, str]:
    """The page's ``python`` blocks that start with a ``# path.py`` line, by path."""
    text = (PROJECT_DIR / "docs" / "deploying.md").read_text()
    section = text.split(EXAMPLE_SECTION, 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        match = re.fullmatch(r"# ([\w/]+\.py)", block.partition("\n")[0].strip())
        if match:
            files[match.group(1)] = block
    return files


@dataclass
class Example:
    server: Server
    cookie: str

    def ws(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws/{room}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    """daphne serving the page's project, with a logged-in user's session cookie."""
    tmp = tmp_path_factory.mktemp("docs-example")
    for name, code in example_files().items():
        path = tmp / name
        path.parent.mkdir(exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.write_text(code)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("YDJANGO_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="mysite.settings", PYTHONPATH=str(tmp),
               DJANGO_SECRET_KEY="docs-example-secret-key-" + "x" * 40, PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, "-m", "django", "migrate", "--verbosity", "0"], env=env,
                   cwd=tmp, check=True)
    login = subprocess.run([sys.executable, "-m", "django", "shell", "-c", LOGIN_SCRIPT],
                           env=env, cwd=tmp, capture_output=True, text=True, check=True)
    server = Server(daphne_command("mysite.asgi:application"), env, tmp / "daphne.log")
    yield Example(server, login.stdout.strip().splitlines()[-1])
    server.stop()


def test_example_has_every_file() -> None:
    assert set(example_files()) == EXAMPLE_FILES


async def test_example_refuses_anonymous_and_originless_clients(example: Example) -> None:
    with pytest.raises(InvalidStatus) as anonymous:
        await RawClient.open(example.ws("anon"), headers={"Origin": example.origin})
    assert anonymous.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as originless:
        await RawClient.open(example.ws("anon"), headers={"Cookie": example.cookie})
    assert originless.value.response.status_code == 403


async def test_example_room_and_send_doc_update_from_a_view(example: Example) -> None:
    headers = {"Cookie": example.cookie, "Origin": example.origin}
    a = await RawClient.open(example.ws("my-room"), headers=headers)
    b = await RawClient.open(example.ws("my-room"), headers=headers)
    try:
        await a.handshake()
        await b.handshake()
        await a.edit("typed by a")
        await b.wait_for(lambda _m: b.text() == "typed by a")

        def post() -> int:
            request = urllib.request.Request(
                f"{example.origin}/notes/my-room/append", data=b"line=from+a+view",
                method="POST", headers={
                    "Cookie": f"{example.cookie}; csrftoken={CSRF_TOKEN}",
                    "X-CSRFToken": CSRF_TOKEN,
                    "Content-Type": "application/x-www-form-urlencoded",
                })
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status

        assert await asyncio.to_thread(post) == 200
        for client in (a, b):
            await client.wait_for(lambda _m, c=client: "from a view\n" in c.text())
        assert a.text() == b.text()
        assert "typed by a" in a.text()
    finally:
        await a.close()
        await b.close()
