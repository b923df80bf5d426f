"""Open room websockets outlive neither a revoked login nor a lost permission.

A Jupyter server (embedded, and in remote mode in front of ``serve``) re-asks its identity
provider and authorizer every ``c.YDjango.reauthorize_interval`` seconds (here 0.5) for each
open room websocket. The test users' access is taken away through the ``TEST_REVOCATIONS``
file that :mod:`jupyter_auth` reads: a revoked token closes its websockets with 4401, a user
who may only read now has their writer's websocket closed with 4403 (the frontend reconnects
as a reader), and the others stay.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from frame_client import RawClient
from jupyter_servers import JupyterServer
from remote_deployment import Remote

from jupyter_ydjango.protocol import close_codes

TEXT = {"format": "text", "type": "file"}
INTERVAL = 0.5


class Setup:
    def __init__(self, jupyter: JupyterServer, root: Path, revocations: Path) -> None:
        self.jupyter, self.root, self.revocations = jupyter, root, revocations

    def room(self, path: str, token: str) -> str:
        (self.root / path).write_text("text")
        status, info = self.jupyter.session(path, token=token, body=TEXT)
        assert status in (200, 201), (status, info)
        return self.jupyter.room_url(info, token=token)

    def revoke(self, **what: list[str]) -> None:
        self.revocations.write_text(json.dumps(what))


@pytest.fixture(params=["embedded", "remote"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    revocations = tmp_path / "revocations.json"
    args = (f"--YDjango.reauthorize_interval={INTERVAL}",)
    if request.param == "embedded":
        root = tmp_path / "root"
        root.mkdir()
        jupyter = JupyterServer(tmp_path, root, args=(
            "--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
            "--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer", *args),
            TEST_REVOCATIONS=str(revocations))
        yield Setup(jupyter, root, revocations)
        jupyter.stop()
    else:
        remote = Remote(tmp_path, jupyter_args=args, TEST_REVOCATIONS=str(revocations))
        yield Setup(remote.jupyter, remote.root, revocations)
        remote.jupyter.stop()
        remote.service.stop()


async def test_a_revoked_token_closes_its_websockets(setup: Setup) -> None:
    revoked = await RawClient.open(setup.room("revoked.txt", "editor-token"))
    kept = await RawClient.open(setup.room("kept.txt", "writer-token"))
    try:
        await revoked.handshake()
        await kept.handshake()
        await revoked.edit("!", name="source")
        setup.revoke(revoked=["editor-token"])
        assert await revoked.wait_closed(10 * INTERVAL + 5) == close_codes.UNAUTHORIZED
        await kept.barrier()  # still open and answering
        assert not kept.closed
        deadline = time.monotonic() + 10  # its edit was kept, and is saved
        while (setup.root / "revoked.txt").read_text() != "text!":
            assert time.monotonic() < deadline, (setup.root / "revoked.txt").read_text()
            await asyncio.sleep(0.1)
    finally:
        await revoked.close()
        await kept.close()


async def test_a_writer_made_reader_is_closed_and_comes_back_reading(setup: Setup) -> None:
    url = setup.room("demoted.txt", "editor-token")
    client = await RawClient.open(url)
    try:
        await client.handshake()
        setup.revoke(readers=["editor"])
        assert await client.wait_closed(10 * INTERVAL + 5) == close_codes.FORBIDDEN
    finally:
        await client.close()
    again = await RawClient.open(url)
    try:
        await again.handshake()
        await again.edit(" by a reader", name="source")
        await again.wait_for(lambda m: m.type == 2)  # permission denied
        assert not again.closed
    finally:
        await again.close()
