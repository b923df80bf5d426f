"""Remote mode: a Jupyter server proxies the collaboration API to a separate Django service.

The service is ``python -m jupyter_ydjango serve`` (daphne) on the same notebook directory,
configured with a shared secret; the Jupyter server has ``c.YDjango.remote_url`` and
``c.YDjango.shared_secret``. What it proves: sessions, rooms, saves, stale sessions and
read-only users work through the proxy; the service refuses identities that are not signed
with the shared secret, or signed too long ago; an unreachable service gives 502 / 1011.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any
from unittest import mock

import nbformat
import pytest
from django.core import signing
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from notebook_client import DocClient
from remote_deployment import SECRET, Remote, append_source, open_notebook
from signed import signed

from jupyter_ydjango.api.identity import HEADER, Identity

ALICE = Identity("alice", "write", "Alice", "Alice")


def sign_identity_unbound(identity: Identity, secret: str) -> str:
    """A header as earlier versions signed it: the identity alone, for any request."""
    return signing.TimestampSigner(key=secret, salt="jupyter_ydjango.identity").sign_object(
        identity.as_dict(), compress=True)


def write_notebook(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_markdown_cell(f"# {path.stem}", id="md-1"),
                                       new_code_cell("x = 1", id="code-1")]), path)
    return path


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Any:
    remote = Remote(tmp_path_factory.mktemp("remote"))
    yield remote
    remote.jupyter.stop()
    remote.service.stop()


# --- through the proxy ----------------------------------------------------------------------


def test_session_api_through_the_proxy(remote: Remote) -> None:
    jupyter = remote.jupyter
    write_notebook(remote.root / "p.ipynb")
    status, first = jupyter.session("p.ipynb")
    assert status == 201 and set(first) == {"format", "type", "fileId", "sessionId"}
    assert jupyter.session("p.ipynb") == (200, first)
    assert jupyter.session("missing.ipynb")[0] == 404
    assert jupyter.session("p.ipynb", body={"format": "json", "type": "nope"})[0] == 400
    assert jupyter.request("PUT", "api/collaboration/session/%2e%2e/x.ipynb",
                           {"format": "json", "type": "notebook"})[0] == 403
    assert jupyter.session("p.ipynb", token=None)[0] in (401, 403)
    status, room = jupyter.request("GET", f"api/ydjango/rooms/{first['fileId']}")
    assert status == 200 and room["path"] == "p.ipynb" and room["readOnly"] is False


async def test_rooms_through_the_proxy(remote: Remote) -> None:
    jupyter = remote.jupyter
    path = write_notebook(remote.root / "room.ipynb")
    a = await open_notebook(jupyter, "room.ipynb")
    b = await open_notebook(jupyter, "room.ipynb", token="writer-token")
    reader = await open_notebook(jupyter, "room.ipynb", token="reader-token")
    try:
        append_source(a.model, 0, " via the proxy")
        await b.wait_for(lambda m: str(m.ycells[0]["source"]) == "# room via the proxy")
        await reader.wait_for(lambda m: str(m.ycells[0]["source"]) == "# room via the proxy")
        append_source(reader.model, 1, "  # reader")
        await reader.flush()
        await reader.wait_for(lambda m: reader.denied)
        assert await a.save() == "success"
        saved = nbformat.read(path, as_version=4)
        assert [c.source for c in saved.cells] == ["# room via the proxy", "x = 1"]
    finally:
        for client in (a, b, reader):
            await client.close()


async def test_deletion_through_jupyter_reaches_the_service(remote: Remote) -> None:
    """The Jupyter server tells the remote service of a deletion (as of a rename): the room
    stops saving the file and tells its clients; a reader may not report deletions."""
    jupyter = remote.jupyter
    path = write_notebook(remote.root / "deleted remotely.ipynb")
    client = await open_notebook(jupyter, "deleted remotely.ipynb")
    try:
        status, _ = jupyter.request("DELETE", "api/contents/deleted%20remotely.ipynb")
        assert status == 204
        notice = await client.wait_raw(lambda m: m.get("type") == "file")
        assert notice["status"] == "deleted"
        append_source(client.model, 0, " after")
        assert await client.save() == "failed"
        assert not path.exists()
    finally:
        await client.close()
    # the service's endpoint wants a signed identity that may write
    body = {"path": "anything.ipynb"}
    reader = signed(Identity("reader", "read", "Reader", "Reader"), SECRET, "POST",
                    "/api/ydjango/delete")
    assert remote.direct("POST", "/api/ydjango/delete", body, reader)[0] == 403
    assert remote.direct("POST", "/api/ydjango/delete", body)[0] == 401


async def test_stale_session_through_the_proxy(remote: Remote) -> None:
    write_notebook(remote.root / "stale.ipynb")
    _, info = remote.jupyter.session("stale.ipynb")
    client = await DocClient.open(remote.jupyter.room_url(info, session_id="old-run"),
                                  sync=False)
    assert await client.wait_closed() == 1003
    assert json.loads(client.ws.close_reason) == {
        "reason": "unknown_session", "sessionId": "old-run", "reloadable": True}
    info = {**info, "fileId": "no-such-file"}
    client = await DocClient.open(remote.jupyter.room_url(info), sync=False)
    assert await client.wait_closed() == 4404


# --- the service checks identities ----------------------------------------------------------


def test_service_refuses_unsigned_forged_and_expired_identities(remote: Remote) -> None:
    write_notebook(remote.root / "direct.ipynb")
    path = "/api/collaboration/session/direct.ipynb"
    body = {"format": "json", "type": "notebook"}
    with mock.patch("django.core.signing.time.time", return_value=time.time() - 11):
        expired = signed(ALICE, SECRET, "PUT", path)  # older than the 10 s of the default
    good = signed(ALICE, SECRET, "PUT", path)
    assert remote.direct("PUT", path, body, good)[0] in (200, 201)
    for headers in (
        {},
        signed(ALICE, "another-secret", "PUT", path),
        {HEADER: signed(ALICE, SECRET, "PUT", path)[HEADER][:-4] + "AAAA"},
        expired,
        {HEADER: "garbage"},
        good,  # replayed
        signed(ALICE, SECRET, "DELETE", path),  # for another method
        signed(ALICE, SECRET, "PUT", "/api/collaboration/session/other.ipynb"),  # another path
        {HEADER: sign_identity_unbound(ALICE, SECRET)},  # of the earlier, unbound kind
    ):
        assert remote.direct("PUT", path, body, headers)[0] == 401, headers
    # the same request signed anew is accepted
    assert remote.direct("PUT", path, body, signed(ALICE, SECRET, "PUT", path))[0] in (
        200, 201)


async def test_service_closes_forged_websockets_with_4401(remote: Remote) -> None:
    write_notebook(remote.root / "ws.ipynb")
    _, info = remote.jupyter.session("ws.ipynb")
    url = (f"ws://127.0.0.1:{remote.service.port}/api/collaboration/room/"
           f"json:notebook:{info['fileId']}?sessionId={info['sessionId']}")
    good = signed(ALICE, SECRET, "GET", url)
    client = await DocClient.open(url, headers=good)
    await client.close()
    for headers in ({}, signed(ALICE, "another-secret", "GET", url), good):
        client = await DocClient.open(url, headers=headers, sync=False)
        assert await client.wait_closed() == 4401
    client = await DocClient.open(url, headers=signed(ALICE, SECRET, "GET", url))
    assert str(client.model.ycells[0]["source"]) == "# ws"
    await client.close()


# --- the service is down (last: it stops the module's service) --------------------------------


async def test_unreachable_service(remote: Remote) -> None:
    write_notebook(remote.root / "down.ipynb")
    _, info = remote.jupyter.session("down.ipynb")
    client = await open_notebook(remote.jupyter, "down.ipynb")
    remote.service.stop()
    assert await client.wait_closed() == 1011  # the connection was lost: retryable
    status, body = remote.jupyter.session("down.ipynb")
    assert status == 502 and "unreachable" in body["message"]
    client = await DocClient.open(remote.jupyter.room_url(info), sync=False)
    assert await client.wait_closed() == 1011  # y-websocket keeps trying to reconnect
