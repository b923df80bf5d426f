"""The seed documentation's ``DocConsumer`` example, run unchanged on a real daphne server.

``tests/support/seedapp`` holds the example as the seed writes it, on y-py (``make_room_name``,
``make_ydoc`` with an observer, ``connect`` refusing anonymous users, ``doc_update``) and its
synchronous ``send_doc_update``, called from a plain Django view; and its twin written for
pycrdt. Every test runs against both: the y-py one where ``y_py`` imports (the ``[ypy]``
extra, Python < 3.13), the pycrdt one everywhere.

A room on a y-py document holds only 32-bit client ids (yjs' width): the clients of the y-py
example use such ids, and a client with a wider one (pycrdt's 53 bits) is refused. The
clients of the pycrdt twin mix both widths.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

import pycrdt
import pytest
from daphne_servers import PROJECT_DIR, Server
from frame_client import RawClient
from websockets.exceptions import InvalidStatus

from jupyter_ydjango.protocol import close_codes

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


#: The example's routes: the seed's y-py consumer, and its pycrdt twin.
ROUTES = {"ypy": "seed", "pycrdt": "seed-pycrdt"}


@dataclass
class Seed:
    server: Server
    #: "ypy" (the example as the seed writes it) or "pycrdt" (its twin)
    engine: str

    def room(self, label: str) -> str:
        """A room name of this variant (both share the server's rooms by name)."""
        return f"{self.engine}-{label}"

    def ws(self, room: str) -> str:
        return f"ws://127.0.0.1:{self.server.port}/{ROUTES[self.engine]}/{room}"

    def client_id(self, n: int) -> int | None:
        """The client id of the ``n``-th client of a test: 32 bits wide on y-py; on pycrdt,
        pycrdt's own (53 bits) and yjs-like 32-bit ones in turn."""
        if self.engine == "pycrdt" and n % 2 == 0:
            return None
        return random.getrandbits(32)

    @property
    def push_query(self) -> str:
        """The push view's query: a 32-bit client id for a y-py room."""
        return "?client_id_bits=32" if self.engine == "ypy" else ""


@pytest.fixture(scope="module", params=list(ROUTES))
def seed(request: pytest.FixtureRequest, seedapp_server: Server) -> Seed:
    """The seedapp server, with helpers for one of the two consumers."""
    if request.param == "ypy":
        pytest.importorskip(
            "y_py", reason="y-py (the [ypy] extra) installs only on Python < 3.13: "
            "the seed's y-py example is not served here")
    return Seed(seedapp_server, request.param)


@pytest.fixture(scope="module")
def cookie(seedapp_server: Server) -> str:
    """``sessionid=<key>`` of a logged-in user, in the database the server uses."""
    proc = subprocess.run(
        [sys.executable, "-m", "django", "shell", "-c", LOGIN_SCRIPT],
        env=seedapp_server.env, cwd=PROJECT_DIR, capture_output=True, text=True, check=False,
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
    doc = pycrdt.Doc()
    for entry in report["updates"]:
        if entry["room"] == room:
            doc.apply_update(base64.b64decode(entry["update"]))
    return str(doc.get("t", type=pycrdt.Text))


async def wait_text(client: RawClient, predicate, timeout: float = 10) -> str:
    """Wait until ``predicate(client.text())`` holds; return the text."""
    try:
        await client.wait_for(lambda _message: predicate(client.text()), timeout)
    except TimeoutError:
        raise AssertionError(f"text never matched; it is {client.text()!r}") from None
    return client.text()


async def join(seed: Seed, room: str, cookie: str, n: int = 0) -> RawClient:
    """The ``n``-th client of a test, synced (its client id: :meth:`Seed.client_id`)."""
    client = await RawClient.open(seed.ws(room), headers={"Cookie": cookie},
                                  client_id=seed.client_id(n))
    await client.handshake()
    return client


@pytest.mark.parametrize("headers", [None, {"Cookie": "sessionid=not-a-session-key"}],
                         ids=["no-cookie", "bad-session"])
async def test_anonymous_client_is_refused(seed: Seed, headers: dict[str, str] | None) -> None:
    room = seed.room(f"anon-{'cookie' if headers else 'none'}")
    with pytest.raises(InvalidStatus) as refused:
        await RawClient.open(seed.ws(room), headers=headers)
    assert refused.value.response.status_code == 403
    # connect() returned before super().connect(): no room, no document
    assert room not in (await observed(seed))["made"]


async def test_logged_in_users_share_one_document(seed: Seed, cookie: str) -> None:
    room = seed.room("shared")
    a = await join(seed, room, cookie, 0)
    b = await join(seed, room, cookie, 1)
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
    room = seed.room("pushed")
    a = await join(seed, room, cookie, 0)
    b = await join(seed, room, cookie, 1)
    late = None
    try:
        await a.edit("typed")
        await wait_text(b, lambda t: t == "typed")

        reply = await asyncio.to_thread(http, seed, "POST", f"/push/{room}{seed.push_query}",
                                        b"PUSHED")
        assert reply["room"] == room

        for client in (a, b):
            text = await wait_text(client, lambda t: "PUSHED" in t)
            assert sorted([text.replace("PUSHED", ""), "PUSHED"]) == ["PUSHED", "typed"]
        assert a.text() == b.text()

        # the push changed the room's document: a client joining now gets it in step 2
        late = await join(seed, room, cookie, 2)
        assert late.text() == a.text()

        report = await observed(seed)
        assert report["made"][room] == 1
        assert observed_text(report, room) == a.text()
    finally:
        for client in (a, b, late):
            if client is not None:
                await client.close()


async def test_ypy_example_refuses_client_ids_it_cannot_hold(seed: Seed, cookie: str) -> None:
    """y-py would store a 53-bit client id truncated and diverge from that client: the room
    closes such a client instead and stays intact for the others."""
    if seed.engine != "ypy":
        pytest.skip("a pycrdt room holds 53-bit client ids (the other tests use them)")
    room = seed.room("wide")
    a = await join(seed, room, cookie, 0)
    wide = await RawClient.open(seed.ws(room), headers={"Cookie": cookie},
                                client_id=(1 << 52) + random.getrandbits(32))
    try:
        await a.edit("kept")
        await wide.handshake()
        assert wide.text() == "kept"
        await wide.edit(" lost")
        assert await wide.wait_closed() == close_codes.UNSUPPORTED_CLIENT_ID
        await a.edit(", still editable")
        late = await join(seed, room, cookie, 1)
        assert await wait_text(late, lambda t: t == a.text()) == "kept, still editable"
        await late.close()
        assert observed_text(await observed(seed), room) == "kept, still editable"
    finally:
        await a.close()
        await wide.close()
