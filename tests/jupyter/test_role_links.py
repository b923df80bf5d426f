"""Role links through a real Jupyter server: the owner makes a link that gives one role on one
notebook; whoever opens it is a named guest with exactly that role there, and nothing else of
the server; revoking the link disconnects its guests; an expired link opens nothing.

The server runs the guests' identity provider and the roles authorizer, as Binder runs it; its
owner logs in with the server's token. Guests have no token: only the cookie the link's page
sets.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_servers import TOKEN, JupyterServer
from notebook_client import DocClient

from jupyter_ydjango.protocol import close_codes

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
GUEST_COOKIE = "ydjango-guest"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    tmp = tmp_path_factory.mktemp("links")
    root = tmp / "root"
    root.mkdir()
    for name in ("lecture.ipynb", "solutions.ipynb"):
        (root / name).write_text(json.dumps(NOTEBOOK))
    jupyter = JupyterServer(tmp, root, args=(
        "--ServerApp.identity_provider_class="
        "jupyter_ydjango.jupyter.guests.GuestIdentityProvider",
        "--ServerApp.authorizer_class=jupyter_ydjango.jupyter.authorizer.RolesAuthorizer",
        "--RolesAuthorizer.cache_seconds=0"),
        # as on Binder: BinderHub sets it, but its servers log in with Jupyter's own token,
        # whose users own the server
        JUPYTERHUB_USER="binder-user")
    yield jupyter
    jupyter.stop()


def make_link(server: JupyterServer, path: str, role: str, **more: Any) -> dict[str, Any]:
    assert server.session(path)[0] in (200, 201)  # the document is known
    status, link = server.request("POST", f"api/ydjango/links/{path}", {"role": role, **more})
    assert status == 201, (status, link)
    return link


def join(server: JupyterServer, token: str, cookie: str = "") -> tuple[int, str, str]:
    """Open ``{base}ydjango/join/{token}`` with no login: (status, redirect, guest cookie)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/ydjango/join/{token}",
                     headers={"Cookie": f"{GUEST_COOKIE}={cookie}"} if cookie else {})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    set_cookie = response.headers.get("Set-Cookie") or ""
    value = set_cookie.split(";", 1)[0].split("=", 1)[1] if set_cookie.startswith(
        GUEST_COOKIE + "=") else ""
    return response.status, response.headers.get("Location") or "", value


def guest_headers(cookie: str) -> dict[str, str]:
    """A guest's browser: its cookie, and the XSRF token a page sends with it."""
    return {"Cookie": f"{GUEST_COOKIE}={cookie}; _xsrf=guest-xsrf",
            "X-XSRFToken": "guest-xsrf"}


def as_guest(server: JupyterServer, cookie: str, method: str, path: str) -> tuple[int, Any]:
    return server.request(method, path, token=None, headers=guest_headers(cookie))


def page(server: JupyterServer, path: str, headers: dict[str, str]) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", f"/{path}", headers=headers)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def page_as_guest(server: JupyterServer, cookie: str, path: str) -> tuple[int, str]:
    """A page of the server (its status and HTML) as the guest's browser gets it."""
    return page(server, path, guest_headers(cookie))


def page_as_owner(server: JupyterServer, path: str) -> tuple[int, str]:
    return page(server, path, {"Authorization": f"token {TOKEN}"})


async def open_as_guest(server: JupyterServer, cookie: str, path: str) -> DocClient:
    status, info = server.request("PUT", f"api/collaboration/session/{path}",
                                  {"format": "json", "type": "notebook"}, token=None,
                                  headers=guest_headers(cookie))
    assert status in (200, 201), (status, info)
    return await DocClient.open(server.room_url(info, token=None),
                                headers=guest_headers(cookie))


async def test_a_link_gives_its_role_there_and_nothing_else(server: JupyterServer) -> None:
    link = make_link(server, "lecture.ipynb", "viewer")
    assert TOKEN not in json.dumps(link)
    status, location, cookie = join(server, link["token"])
    assert status == 302 and location.endswith("/lab/tree/lecture.ipynb"), (status, location)
    assert cookie
    assert TOKEN not in cookie

    # the guest reads the notebook, sees nothing else, writes nothing, runs nothing
    assert as_guest(server, cookie, "GET", "api/contents/lecture.ipynb")[0] == 200
    assert as_guest(server, cookie, "GET", "api/contents/solutions.ipynb")[0] == 403
    status, listing = as_guest(server, cookie, "GET", "api/contents/")
    assert status == 200 and [e["name"] for e in listing["content"]] == ["lecture.ipynb"]
    assert as_guest(server, cookie, "GET", "api/terminals")[0] == 403
    status, me = as_guest(server, cookie, "GET", "api/me")
    assert status == 200 and me["identity"]["username"].startswith("guest-"), me
    assert me["identity"]["name"].startswith("Guest ")
    # the pages a guest is served hold no token (JupyterLab's and Notebook's put the server's
    # in their page config, for their frontend to send with every request)
    for page in ("lab/tree/lecture.ipynb", "notebooks/lecture.ipynb"):
        status, body = page_as_guest(server, cookie, page)
        assert status == 200 and '"token": ""' in body and TOKEN not in body, (page, status)
    status, body = page_as_owner(server, "lab/tree/lecture.ipynb")
    assert status == 200 and TOKEN in body  # (the negative control: the owner's has it)
    # without the cookie, nobody
    assert server.request("GET", "api/contents/lecture.ipynb", token=None)[0] in (302, 403)

    # live: the guest follows the room, read-only; the owner sees the guest's name
    owner = await DocClient.open(server.room_url(server.session("lecture.ipynb")[1]))
    guest = await open_as_guest(server, cookie, "lecture.ipynb")
    try:
        owner.model.append_cell({"cell_type": "markdown", "source": "hello", "metadata": {}})
        await guest.wait_for(lambda m: len(m.ycells) == 1)
        guest.model.append_cell({"cell_type": "markdown", "source": "guest", "metadata": {}})
        await guest.flush()
        assert guest.denied and len(owner.model.ycells) == 1

        # the link listed, then revoked: the guest is disconnected and refused from then on
        status, listed = server.request("GET", "api/ydjango/links/lecture.ipynb")
        assert status == 200 and [x["id"] for x in listed["links"]] == [link["id"]]
        assert listed["links"][0]["opened"] == 1
        status, revoked = server.request("DELETE", "api/ydjango/links/lecture.ipynb",
                                         {"id": link["id"]})
        assert status == 200 and revoked["revoked"], revoked
        assert await guest.wait_closed() == close_codes.FORBIDDEN
        assert as_guest(server, cookie, "GET", "api/contents/lecture.ipynb")[0] == 403
        assert join(server, link["token"])[0] == 410
    finally:
        await owner.close()
        await guest.close()


def test_links_are_the_owners_and_expire(server: JupyterServer) -> None:
    assert join(server, "no-such-link")[0] == 404
    link = make_link(server, "solutions.ipynb", "viewer", expiresIn=2)
    status, _, cookie = join(server, link["token"])
    assert status == 302
    assert as_guest(server, cookie, "GET", "api/contents/solutions.ipynb")[0] == 200
    # a guest manages no links, nor roles
    assert as_guest(server, cookie, "GET", "api/ydjango/links/solutions.ipynb")[0] == 403
    time.sleep(2.5)
    assert as_guest(server, cookie, "GET", "api/contents/solutions.ipynb")[0] == 403
    assert join(server, link["token"])[0] == 410
    # made again: the same guest, with the cookie it has, keeps its name
    again = make_link(server, "solutions.ipynb", "editor")
    status, _, renewed = join(server, again["token"], cookie)
    assert status == 302
    names = [as_guest(server, c, "GET", "api/me")[1]["identity"]["username"]
             for c in (cookie, renewed)]
    assert names[0] == names[1]
    assert as_guest(server, renewed, "GET", "api/contents/solutions.ipynb")[0] == 200


async def test_an_open_holder_is_disconnected_when_its_link_expires(
        server: JupyterServer) -> None:
    (server.root / "handout.ipynb").write_text(json.dumps(NOTEBOOK))
    link = make_link(server, "handout.ipynb", "viewer", expiresIn=3)
    expires = time.time() + 3
    status, _, cookie = join(server, link["token"])
    assert status == 302
    guest = await open_as_guest(server, cookie, "handout.ipynb")
    try:
        # nothing announces an expiry: the connection itself looks its role up again then
        code = await guest.wait_closed(timeout=10)
        late = time.time() - expires
        assert code == close_codes.FORBIDDEN
        assert -0.5 < late < 1.0, f"closed {late:.2f} s after the link expired"
    finally:
        await guest.close()
