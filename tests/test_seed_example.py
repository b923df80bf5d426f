"""The seed documentation's ``DocConsumer`` example, run unchanged on a real daphne server.

``tests/seedapp`` holds the example as the seed writes it (``make_room_name``, ``make_ydoc``
with an observer, ``connect`` refusing anonymous users, ``doc_update``) and its synchronous
``send_doc_update``, called from a plain Django view.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

import pytest
import y_py as Y
from rawclient import RawClient
from servers import PROJECT_DIR, Server
from websockets.exceptions import InvalidStatus

SETTINGS = "seedapp.settings"

#: Run in ``python -m django shell``: a user, logged in through Django's session machinery;
#: prints the session cookie a browser would carry.
LOGIN_SCRIPT = """
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

user = get_user_model().objects.create_user("alice", password="not-used-here")
client = Client()
client.force_login(user)
print(settings.SESSION_COOKIE_NAME + "=" + client.cookies[settings.SESSION_COOKIE_NAME].value)
"""


@dataclass
class Seed:
    server: Server

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def ws(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}/seed/{room}"


@pytest.fixture(scope="module")
def seed(seedapp_server: Server) -> Seed:
    """The seedapp server, with helpers."""
    return Seed(seedapp_server)


@pytest.fixture(scope="module")
def cookie(seed: Seed) -> str:
    """``sessionid=<key>`` of a logged-in user, in the database the server uses."""
    proc = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", LOGIN_SCRIPT],
        env=seed.env, cwd=PROJECT_DIR, capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("sessionid=") and len(line) > len("sessionid="), proc.stdout
    return line


def http(seed: Seed, method: str, path: str, body: bytes | None = None) -> dict:
    request = urllib.request.Request(f"{seed.server.http_url}{path}", data=body, method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


async def observed(seed: Seed) -> dict:
    """What the example recorded: ``made`` (make_ydoc calls per room) and ``updates``."""
    return await asyncio.to_thread(http, seed, "GET", "/observed")


def observed_text(report: dict, room: str) -> str:
    """The text ``t`` rebuilt from the updates the example's observer saw for ``room``."""
    doc = Y.YDoc()
    for entry in report["updates"]:
        if entry["room"] == room:
            Y.apply_update(doc, base64.b64decode(entry["update"]))
    return str(doc.get_text("t"))


async def wait_text(client: RawClient, predicate, timeout: float = 10) -> str:
    """Wait until ``predicate(client.text())`` holds; return the text."""
    try:
        await client.wait_for(lambda _message: predicate(client.text()), timeout)
    except TimeoutError:
        raise AssertionError(f"text never matched; it is {client.text()!r}") from None
    return client.text()


async def join(seed: Seed, room: str, cookie: str) -> RawClient:
    client = await RawClient.open(seed.ws(room), headers={"Cookie": cookie})
    await client.handshake()
    return client


@pytest.mark.parametrize("headers", [None, {"Cookie": "sessionid=not-a-session-key"}],
                         ids=["no-cookie", "bad-session"])
async def test_anonymous_client_is_refused(seed: Seed, headers: dict[str, str] | None) -> None:
    room = f"anon-{'cookie' if headers else 'none'}"
    with pytest.raises(InvalidStatus) as refused:
        await RawClient.open(seed.ws(room), headers=headers)
    assert refused.value.response.status_code == 403
    # connect() returned before super().connect(): no room, no document
    assert room not in (await observed(seed))["made"]


async def test_logged_in_users_share_one_document(seed: Seed, cookie: str) -> None:
    room = "shared"
    a = await join(seed, room, cookie)
    b = await join(seed, room, cookie)
    try:
        await a.edit("hello from a")
        assert await wait_text(b, lambda t: t == "hello from a") == "hello from a"
        await b.edit(", hi from b")
        assert await wait_text(a, lambda t: t == "hello from a, hi from b")

        report = await observed(seed)
        # the seed made a document per connection; here make_ydoc runs once per room
        assert report["made"][room] == 1
        # the example's observer, registered in make_ydoc, saw both edits
        assert observed_text(report, room) == "hello from a, hi from b"
    finally:
        await a.close()
        await b.close()


async def test_send_doc_update_from_a_sync_view_reaches_the_live_room(
    seed: Seed, cookie: str
) -> None:
    room = "pushed"
    a = await join(seed, room, cookie)
    b = await join(seed, room, cookie)
    late = None
    try:
        await a.edit("typed")
        await wait_text(b, lambda t: t == "typed")

        reply = await asyncio.to_thread(http, seed, "POST", f"/push/{room}", b"PUSHED")
        assert reply["room"] == room

        for client in (a, b):
            text = await wait_text(client, lambda t: "PUSHED" in t)
            assert sorted([text.replace("PUSHED", ""), "PUSHED"]) == ["PUSHED", "typed"]
        assert a.text() == b.text()

        # the push changed the room's document: a client joining now gets it in step 2
        late = await join(seed, room, cookie)
        assert late.text() == a.text()

        report = await observed(seed)
        assert report["made"][room] == 1
        assert observed_text(report, room) == a.text()
    finally:
        for client in (a, b, late):
            if client is not None:
                await client.close()
