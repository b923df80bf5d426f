"""The roles authorizer through a real Jupyter server: the owner grants, and each other user
may do exactly what their roles allow (contents, kernels, terminals)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_servers import JupyterServer
from notebook_client import DocClient
from remote_deployment import Remote

from jupyter_ydjango.protocol import close_codes

OWNER, VIEWER, EDITOR, RUNNER = "writer-token", "reader-token", "editor-token", "nobody-token"
NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def files(tmp: Path) -> Path:
    root = tmp / "root"
    (root / "shared").mkdir(parents=True)
    for name in ("granted.txt", "secret.txt", "shared/inside.txt"):
        (root / name).write_text(name)
    for name in ("run.ipynb", "other.ipynb"):
        (root / name).write_text(json.dumps(NOTEBOOK))
    return root


AUTHORIZER = "jupyter_ydjango.jupyter.authorizer.RolesAuthorizer"
OPTIONS = ("--RolesAuthorizer.owners=writer", "--RolesAuthorizer.cache_seconds=0")


@pytest.fixture(scope="module", params=["embedded", "remote"])
def server(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """The Jupyter server with the roles authorizer, its Django side embedded, or a remote
    service (where the grants live, asked with the signed identity)."""
    tmp = tmp_path_factory.mktemp("roles")
    remote: Remote | None = None
    if request.param == "embedded":
        jupyter = JupyterServer(tmp, files(tmp), args=(
            "--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",
            f"--ServerApp.authorizer_class={AUTHORIZER}", *OPTIONS))
    else:
        remote = Remote(tmp, authorizer=AUTHORIZER, jupyter_args=OPTIONS)
        files(tmp)  # (the remote's root is tmp / "root" too)
        jupyter = remote.jupyter
    for path, subject, role, folder in (
            ("granted.txt", "user:reader", "viewer", False),
            ("shared", "user:editor", "editor", True),
            ("run.ipynb", "user:nobody", "runner", False)):
        jupyter.session(path, token=OWNER)  # the document is known
        status, answer = jupyter.request("PUT", f"api/ydjango/roles/{path}", {
            "subject": subject, "role": role, "folder": folder}, token=OWNER)
        assert status == 200, (status, answer)
    yield jupyter
    jupyter.stop()
    if remote is not None:
        remote.service.stop()


def status_of(server: JupyterServer, method: str, path: str, token: str,
              body: object = None) -> int:
    return server.request(method, path, body, token=token)[0]


def listing(server: JupyterServer, path: str, token: str) -> list[str]:
    status, model = server.request("GET", f"api/contents/{path}", token=token)
    assert status == 200, (status, model)
    return sorted(entry["name"] for entry in model["content"])


def new_session(server: JupyterServer, path: str, token: str) -> dict[str, Any]:
    status, made = server.request("POST", "api/sessions", {
        "path": path, "type": "notebook", "name": "", "kernel": {"name": "python3"}},
        token=token)
    assert status == 201, (status, made)
    return made


def test_a_viewer_reads_only_what_was_granted(server: JupyterServer) -> None:
    status, model = server.request("GET", "api/contents/granted.txt", token=VIEWER)
    # shown as the contents API treats it for them: JupyterLab then disables Save
    assert status == 200 and model["writable"] is False, (status, model)
    assert server.request("GET", "api/contents/granted.txt", token=OWNER)[1]["writable"]
    assert status_of(server, "GET", "api/contents/secret.txt", VIEWER) == 403
    assert status_of(server, "GET", "files/secret.txt", VIEWER) == 403
    assert status_of(server, "PUT", "api/contents/granted.txt", VIEWER, {
        "type": "file", "format": "text", "content": "changed"}) == 403
    assert status_of(server, "POST", "api/terminals", VIEWER) == 403
    assert status_of(server, "POST", "api/kernels", VIEWER, {}) == 403
    assert status_of(server, "POST", "api/sessions", VIEWER, {
        "path": "granted.txt", "type": "file", "name": "", "kernel": {"name": "python3"}}) == 403


def test_a_listing_shows_only_what_leads_to_a_grant(server: JupyterServer) -> None:
    assert listing(server, "", VIEWER) == ["granted.txt"]
    assert listing(server, "", EDITOR) == ["shared"]
    assert "inside.txt" in listing(server, "shared", EDITOR)
    assert status_of(server, "GET", "api/contents/shared", VIEWER) == 403
    assert len(listing(server, "", OWNER)) >= 5


def test_no_file_is_reached_around_the_contents_api(server: JupyterServer) -> None:
    # a copy reads its source, a rename writes its target, a conversion reads its file
    assert status_of(server, "POST", "api/contents/shared", EDITOR,
                     {"copy_from": "secret.txt"}) == 403
    assert status_of(server, "POST", "api/contents/shared", EDITOR,
                     {"copy_from": "shared/inside.txt"}) == 201
    body = {"type": "file", "format": "text", "content": "to move"}
    assert status_of(server, "PUT", "api/contents/shared/moving.txt", EDITOR, body) in (200, 201)
    assert status_of(server, "PATCH", "api/contents/shared/moving.txt", EDITOR,
                     {"path": "moved.txt"}) == 403
    assert status_of(server, "PATCH", "api/contents/shared/moving.txt", EDITOR,
                     {"path": "shared/moved.txt"}) == 200
    assert status_of(server, "GET", "nbconvert/html/other.ipynb", VIEWER) == 403
    assert status_of(server, "GET", "nbconvert/html/other.ipynb", OWNER) == 200


def test_an_editor_writes_only_where_granted(server: JupyterServer, tmp_path: Path) -> None:
    body = {"type": "file", "format": "text", "content": "by the editor"}
    assert status_of(server, "PUT", "api/contents/shared/new.txt", EDITOR, body) in (200, 201)
    assert status_of(server, "PUT", "api/contents/top.txt", EDITOR, body) == 403
    status, model = server.request("GET", "api/contents/shared/inside.txt", token=EDITOR)
    assert status == 200 and model["writable"] is True, (status, model)
    assert status_of(server, "GET", "api/contents/secret.txt", EDITOR) == 403


def test_a_runner_runs_only_its_notebook(server: JupyterServer) -> None:
    kernel = {"name": "python3"}
    status, made = server.request("POST", "api/sessions", {
        "path": "run.ipynb", "type": "notebook", "name": "", "kernel": kernel}, token=RUNNER)
    assert status == 201, (status, made)
    try:
        kernel_id = made["kernel"]["id"]
        assert status_of(server, "GET", f"api/kernels/{kernel_id}", RUNNER) == 200
        assert status_of(server, "POST", "api/sessions", RUNNER, {
            "path": "other.ipynb", "type": "notebook", "name": "", "kernel": kernel}) == 403
        assert status_of(server, "POST", f"api/kernels/{kernel_id}/interrupt", VIEWER) == 403
    finally:
        server.request("DELETE", f"api/sessions/{made['id']}", token=OWNER)


def test_running_kernels_are_listed_only_to_their_runners(server: JupyterServer) -> None:
    theirs, owners = new_session(server, "run.ipynb", RUNNER), new_session(
        server, "other.ipynb", OWNER)
    try:
        for token, sessions in ((RUNNER, [theirs]), (VIEWER, []), (OWNER, [theirs, owners])):
            status, listed = server.request("GET", "api/sessions", token=token)
            assert status == 200
            assert sorted(s["id"] for s in listed) == sorted(s["id"] for s in sessions), token
            status, kernels = server.request("GET", "api/kernels", token=token)
            assert status == 200
            assert sorted(k["id"] for k in kernels) == sorted(
                s["kernel"]["id"] for s in sessions), token
        assert status_of(server, "GET", f"api/kernels/{owners['kernel']['id']}", RUNNER) == 403
    finally:
        for made in (theirs, owners):
            server.request("DELETE", f"api/sessions/{made['id']}", token=OWNER)


async def test_a_role_change_reaches_the_guests_open_notebook(server: JupyterServer) -> None:
    """The viewer's room connection, opened through the Jupyter server, follows the owner's
    changes: made editor, its edit lands; revoked, it is closed with 4403."""
    (server.root / "live.ipynb").write_text(json.dumps(NOTEBOOK))
    status, info = server.session("live.ipynb", token=OWNER)
    assert status in (200, 201), info
    owner = await DocClient.open(server.room_url(info, token=OWNER))
    guest: DocClient | None = None
    try:
        assert server.request("PUT", "api/ydjango/roles/live.ipynb", {
            "subject": "user:reader", "role": "viewer"}, token=OWNER)[0] == 200
        status, info = server.session("live.ipynb", token=VIEWER)
        assert status in (200, 201), info
        guest = await DocClient.open(server.room_url(info, token=VIEWER))
        assert server.request("PUT", "api/ydjango/roles/live.ipynb", {
            "subject": "user:reader", "role": "editor"}, token=OWNER)[0] == 200
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": False})
        guest.model.append_cell({"cell_type": "markdown", "source": "by the guest",
                                 "metadata": {}})
        await owner.wait_for(lambda m: len(m.ycells) == 1)
        status, answer = server.request("DELETE", "api/ydjango/roles/live.ipynb", {
            "subject": "user:reader"}, token=OWNER)
        assert status == 200, answer
        assert await guest.wait_closed() == close_codes.FORBIDDEN
    finally:
        await owner.close()
        if guest is not None:
            await guest.close()


def test_the_owner_does_everything(server: JupyterServer) -> None:
    assert status_of(server, "GET", "api/contents/secret.txt", OWNER) == 200
    # (but makes no role link where guests cannot come in: it would open nothing)
    assert status_of(server, "POST", "api/ydjango/links/granted.txt", OWNER,
                     {"role": "viewer"}) == 404
    status, terminal = server.request("POST", "api/terminals", token=OWNER)
    assert status == 200, (status, terminal)
    server.request("DELETE", f"api/terminals/{terminal['name']}", token=OWNER)


def test_without_the_setting_every_user_has_the_server(tmp_path: Path) -> None:
    """The control: the same users and grants, with Jupyter's own authorizer."""
    jupyter = JupyterServer(tmp_path, files(tmp_path), args=(
        "--ServerApp.identity_provider_class=jupyter_auth.TokenUsers",))
    try:
        jupyter.session("granted.txt", token=OWNER)
        assert jupyter.request("PUT", "api/ydjango/roles/granted.txt", {
            "subject": "user:reader", "role": "viewer"}, token=OWNER)[0] == 200
        assert status_of(jupyter, "GET", "api/contents/secret.txt", VIEWER) == 200
        assert len(listing(jupyter, "", VIEWER)) >= 5
        status, terminal = jupyter.request("POST", "api/terminals", token=VIEWER)
        assert status == 200, (status, terminal)
        jupyter.request("DELETE", f"api/terminals/{terminal['name']}", token=OWNER)
    finally:
        jupyter.stop()
