"""Presence of idle people: real y-websocket clients (node, y-protocols) in a real Jupyter
server, in the awareness room JupyterLab's collaborators panel shows
(``JupyterLab:globalAwareness``).

y-websocket closes a connection that received nothing for 30 s and connects again; the room
removes the awareness state of a connection that closes (so that its cursor disappears) and
the client announces it again when it is back, with the clock it had. Two things keep idle
people listed: the room answers each client's awareness update to it as well (as
pycrdt-websocket does), so that an idle client alone in a room still hears from it; and a
client coming back under a clock the room removed is told so, which makes y-protocols raise
its clock and announce itself again, so that everyone, new joiners included, sees it at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from jupyter_servers import JupyterServer
from yjs_client import NodeDriver

pytestmark = pytest.mark.node

ROOM = "JupyterLab:globalAwareness"
#: y-websocket's watchdog: a connection that received nothing for this long is closed.
MESSAGE_RECONNECT_TIMEOUT = 30
#: Two users' states as JupyterLab's frontend announces them: with the user Jupyter gave it
#: (the room shows that user, whatever a state claims).
ALICE = {"user": {"username": "writer", "name": "Writer", "display_name": "Writer"},
         "current": "notebook:a.ipynb"}
BOB = {"user": {"username": "editor", "name": "Editor", "display_name": "Editor"},
       "current": None}
#: The tokens of the users of ALICE and BOB (tests/support/jupyter_auth.py).
ALICE_TOKEN, BOB_TOKEN = {"token": "writer-token"}, {"token": "editor-token"}


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("awareness")
    root = tmp / "root"
    root.mkdir()
    server = JupyterServer(tmp, root, args=(
        "--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",))
    yield server
    server.stop()


def room_url(server: JupyterServer) -> str:
    return server.url("api/collaboration/room", ws=True)


async def connected_again(client: Any, closes: int, timeout: float = 10) -> None:
    """Wait until ``client`` is connected after its ``closes``-th close."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        events = await client.events()
        after = [e for e in events if e["type"] == "connection-close"][closes - 1:]
        if len([e for e in events if e["type"] == "connection-close"]) >= closes and any(
                e["type"] == "status" and e["status"] == "connected"
                for e in events[events.index(after[0]):]):
            return
        assert loop.time() < deadline, events
        await asyncio.sleep(0.05)


async def test_an_idle_client_alone_stays_connected(jupyter: JupyterServer,
                                                    ydriver: NodeDriver) -> None:
    """Alone and idle for longer than y-websocket's watchdog: the connection stays."""
    alice = await ydriver.connect(room_url(jupyter), ROOM, ALICE_TOKEN, awareness=ALICE)
    await asyncio.sleep(MESSAGE_RECONNECT_TIMEOUT + 5)
    assert await alice.close_events() == []
    bob = await ydriver.connect(room_url(jupyter), ROOM, BOB_TOKEN, awareness=BOB)
    assert await bob.wait_awareness(alice.client_id, state=ALICE, timeout=2) < 2000
    await alice.close()
    await bob.close()


async def test_a_client_coming_back_is_seen_by_who_joins_next(
        jupyter: JupyterServer, ydriver: NodeDriver) -> None:
    alice = await ydriver.connect(room_url(jupyter), ROOM, ALICE_TOKEN, awareness=ALICE)
    await alice.drop()  # the connection is lost; y-websocket connects again by itself
    await connected_again(alice, 1)
    bob = await ydriver.connect(room_url(jupyter), ROOM, BOB_TOKEN, awareness=BOB)
    assert await bob.wait_awareness(alice.client_id, state=ALICE, timeout=2) < 2000
    await alice.close()
    await bob.close()


async def test_a_client_coming_back_reappears_for_those_present(
        jupyter: JupyterServer, ydriver: NodeDriver) -> None:
    alice = await ydriver.connect(room_url(jupyter), ROOM, ALICE_TOKEN, awareness=ALICE)
    bob = await ydriver.connect(room_url(jupyter), ROOM, BOB_TOKEN, awareness=BOB)
    await bob.wait_awareness(alice.client_id, state=ALICE)
    await alice.drop()
    await bob.wait_awareness(alice.client_id, present=False)  # its cursor goes at once
    await connected_again(alice, 1)
    assert await bob.wait_awareness(alice.client_id, state=ALICE, timeout=2) < 2000
    # and stays: alice's own clock went past the removal, her renewals are not refused
    await alice.set_awareness({**ALICE, "current": "notebook:b.ipynb"})
    await bob.wait_awareness(alice.client_id, state={**ALICE, "current": "notebook:b.ipynb"},
                             timeout=2)
    await alice.close()
    await bob.close()
