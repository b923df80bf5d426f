"""The session and room status requests answered as plain ASGI, and the same answers through
Django's views.

In-process: the project's ASGI application (:mod:`jupyter_ydjango.project.asgi`) on the embedded
settings and a migrated SQLite database, called the way the Jupyter server's bridge and
daphne call it. What it proves: a client with an identity of its own (the bridge's scope, a
signed header) gets the same answers as Django's views would give, without Django's request
cycle; a refused header is refused there too; everything else (a Django login, no identity,
other routes and methods) still goes through Django.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from asgi_calls import applications, call
from asgiref.sync import async_to_sync
from django.core.signals import request_started
from django.test import override_settings
from notebooks import generated_notebook
from signed import signed

from jupyter_ydjango.api.identity import HEADER, Identity
from jupyter_ydjango.rooms.room import find_room

ALICE = Identity("alice", "write", "Alice", "Al")
SECRET = "session-endpoint-secret-of-at-least-32-bytes"
NOTEBOOK = {"format": "json", "type": "notebook"}


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    with override_settings(YDJANGO_NOTEBOOK_DIR=str(tmp_path), YDJANGO_IDENTITY_SECRET=SECRET):
        yield tmp_path


@pytest.fixture
def django_requests() -> Iterator[list[Any]]:
    """The requests that entered Django's request cycle (its ``request_started`` signal)."""
    seen: list[Any] = []

    def record(sender: Any, **kwargs: Any) -> None:
        seen.append(kwargs.get("scope") or kwargs.get("environ"))

    request_started.connect(record)
    yield seen
    request_started.disconnect(record)


def write_notebook(path: Path) -> None:
    path.write_text(nbformat.writes(generated_notebook(2)))


def session_path(name: str) -> str:
    return f"/api/collaboration/session/{name}"


async def test_the_endpoint_answers_as_djangos_view_does(root: Path,
                                                         django_requests: list[Any]) -> None:
    for name in ("new-endpoint.ipynb", "new-django.ipynb", "known.ipynb"):
        write_notebook(root / name)
    (root / "folder").mkdir()
    apps = applications()
    assert (await call(apps["endpoint"], session_path("known.ipynb"),
                       json.dumps(NOTEBOOK).encode(), identity=ALICE))[0] == 201
    known = {kind: await call(app, session_path("known.ipynb"), json.dumps(NOTEBOOK).encode(),
                              identity=ALICE) for kind, app in apps.items()}
    assert known["endpoint"] == known["django"]  # same fileId and sessionId
    assert known["endpoint"][0] == 200

    created = {kind: await call(app, session_path(f"new-{kind}.ipynb"),
                                json.dumps(NOTEBOOK).encode(), identity=ALICE)
               for kind, app in apps.items()}
    assert {kind: (status, sorted(body)) for kind, (status, body) in created.items()} == {
        kind: (201, ["fileId", "format", "sessionId", "type"]) for kind in apps}

    cases = [
        ("known.ipynb", b"{not json"),
        ("known.ipynb", b"[1, 2]"),
        ("known.ipynb", json.dumps({"format": "json", "type": "spreadsheet"}).encode()),
        ("known.ipynb", json.dumps({"format": "json", "type": "n" * 500}).encode()),
        ("known.ipynb", json.dumps({"format": 1, "type": "notebook"}).encode()),
        ("../outside.ipynb", json.dumps(NOTEBOOK).encode()),
        ("missing.ipynb", json.dumps(NOTEBOOK).encode()),
        ("folder", json.dumps(NOTEBOOK).encode()),
    ]
    for name, body in cases:
        answers = {kind: await call(app, session_path(name), body, identity=ALICE)
                   for kind, app in apps.items()}
        assert answers["endpoint"] == answers["django"], (name, body)
        assert answers["endpoint"][0] in (400, 403, 404), answers
    # Only the requests sent to Django's own handler entered Django.
    assert len(django_requests) == 2 + len(cases)


async def test_room_status_answers_as_djangos_view_does(root: Path,
                                                        django_requests: list[Any]) -> None:
    write_notebook(root / "status.ipynb")
    apps = applications()
    _, info = await call(apps["endpoint"], session_path("status.ipynb"),
                         json.dumps(NOTEBOOK).encode(), identity=ALICE)
    # the session request loads the room ahead of a client: compare once it is loaded
    for _ in range(1000):
        if find_room(f"json:notebook:{info['fileId']}") is not None:
            break
        await asyncio.sleep(0.01)
    assert find_room(f"json:notebook:{info['fileId']}") is not None
    reader = Identity("rita", "read", "Rita", "Ri")
    for file_id, identity in ((info["fileId"], ALICE), (info["fileId"], reader),
                              ("no-such-file", ALICE)):
        answers = {kind: await call(app, f"/api/ydjango/rooms/{file_id}", method="GET",
                                    identity=identity) for kind, app in apps.items()}
        assert answers["endpoint"] == answers["django"], file_id
    status, answer = answers["endpoint"]
    assert (status, answer) == (404, {"error": "no document 'no-such-file'"})
    status, answer = await call(apps["endpoint"], f"/api/ydjango/rooms/{info['fileId']}",
                                method="GET", identity=reader)
    assert (status, answer["readOnly"], answer["path"]) == (200, True, "status.ipynb")
    assert len(django_requests) == 3


async def test_signed_identities_skip_django_and_refused_ones_get_401(
        root: Path, django_requests: list[Any]) -> None:
    write_notebook(root / "signed.ipynb")
    app = applications()["endpoint"]
    body = json.dumps(NOTEBOOK).encode()
    path = session_path("signed.ipynb")
    status, answer = await call(app, path, body, headers=signed(ALICE, SECRET, "PUT", path))
    assert status == 201 and answer["format"] == "json"
    # chunked body: read whole
    assert (await call(app, path, [body[:5], body[5:]],
                       headers=signed(ALICE, SECRET, "PUT", path)))[0] == 200
    replayed = signed(ALICE, SECRET, "PUT", path)
    assert (await call(app, path, body, headers=replayed))[0] == 200
    for bad in (signed(ALICE, "another-secret", "PUT", path), {HEADER: "garbage"}, replayed,
                signed(ALICE, SECRET, "POST", path),
                signed(ALICE, SECRET, "PUT", session_path("other.ipynb"))):
        assert await call(app, path, body, headers=bad) == (
            401, {"error": "not authenticated"})
    assert django_requests == []


async def test_limits_and_hosts(root: Path, django_requests: list[Any]) -> None:
    write_notebook(root / "limits.ipynb")
    app = applications()["endpoint"]
    status, answer = await call(app, session_path("limits.ipynb"), b" " * (64 * 1024 + 1),
                                identity=ALICE)
    assert (status, answer) == (413, {"error": "the body is too large"})
    status, answer = await call(app, session_path("limits.ipynb"), json.dumps(NOTEBOOK).encode(),
                                identity=ALICE, host="evil.example")
    assert status == 400 and "ALLOWED_HOSTS" in answer["error"]
    # a client that leaves before its body arrives gets nothing, and nothing is indexed
    assert await call(app, session_path("limits.ipynb"), [], identity=ALICE) == (0, None)
    assert (await call(app, session_path("limits.ipynb"), json.dumps(NOTEBOOK).encode(),
                       identity=ALICE))[0] == 201
    assert django_requests == []


async def test_other_requests_still_go_through_django(root: Path,
                                                      django_requests: list[Any]) -> None:
    write_notebook(root / "other.ipynb")
    app = applications()["endpoint"]
    body = json.dumps(NOTEBOOK).encode()
    # no identity at all: Django's view refuses it (a Django login could have applied)
    assert await call(app, session_path("other.ipynb"), body) == (
        401, {"error": "not authenticated"})
    # another method on the route: Django's 405
    assert (await call(app, session_path("other.ipynb"), method="GET", identity=ALICE))[0] == 405
    # another route
    assert (await call(app, "/api/ydjango/rename", method="GET", identity=ALICE))[0] == 405
    # no identity on the room status route: Django's view refuses it too
    assert (await call(app, "/api/ydjango/rooms/x", method="GET"))[0] == 401
    assert len(django_requests) == 4


#: A CSRF secret, as Django's ``csrftoken`` cookie holds one.
CSRF_TOKEN = "csrf0token0of0thirty0two0chars00"


def login_cookie(username: str) -> str:
    """The session cookie of a Django login of ``username``."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username=username)
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def test_a_django_login_opens_sessions_with_its_csrf_token(root: Path,
                                                           django_requests: list[Any]) -> None:
    write_notebook(root / "login.ipynb")
    cookie = login_cookie("session-login")
    app = applications()["endpoint"]
    body = json.dumps(NOTEBOOK).encode()
    status, answer = async_to_sync(call)(app, session_path("login.ipynb"), body,
                                         headers={"cookie": cookie})
    assert status == 403 and "CSRF" in answer["error"], (status, answer)
    status, answer = async_to_sync(call)(
        app, session_path("login.ipynb"), body,
        headers={"cookie": f"{cookie}; csrftoken={CSRF_TOKEN}", "x-csrftoken": CSRF_TOKEN,
                 "origin": "http://localhost", "content-type": "application/json"})
    assert status == 201 and answer["type"] == "notebook"
    assert len(django_requests) == 2


def test_a_cross_site_post_with_a_django_login_is_refused(root: Path) -> None:
    """A page of another site posting a form (``text/plain``: no preflight) with the user's
    cookies changes nothing; nor does one of this site without the CSRF token, nor a JSON
    API called with a form body; the bridge's and a signed header's requests need no
    token."""
    from jupyter_ydjango.store import records

    write_notebook(root / "kept.ipynb")
    info, _ = records.get_or_create_document("kept.ipynb", "json", "notebook")
    cookie = f"{login_cookie('cross-site')}; csrftoken={CSRF_TOKEN}"
    app = applications()["endpoint"]
    delete = json.dumps({"path": "kept.ipynb"}).encode()

    def post(headers: dict[str, str], body: bytes = delete, **kwargs: Any) -> tuple[int, Any]:
        return async_to_sync(call)(app, "/api/ydjango/delete", body, method="POST",
                                   headers=headers, **kwargs)

    status, answer = post({"cookie": cookie, "origin": "https://attacker.example",
                           "content-type": "text/plain"})
    assert status == 403 and "CSRF" in answer["error"], (status, answer)
    status, answer = post({"cookie": cookie, "origin": "http://localhost",
                           "content-type": "application/json"})
    assert status == 403, "no token"
    status, answer = post({"cookie": cookie, "origin": "https://attacker.example",
                           "x-csrftoken": CSRF_TOKEN, "content-type": "application/json"})
    assert status == 403, "the token, from another site"
    status, answer = post({"cookie": cookie, "origin": "http://localhost",
                           "x-csrftoken": CSRF_TOKEN, "content-type": "text/plain"})
    assert status == 415 and "application/json" in answer["error"], (status, answer)
    # a fork request too (PUT), and undo_redo
    for method, path in (("PUT", f"/api/collaboration/fork/{info.room_name}"),
                         ("PUT", f"/api/collaboration/undo_redo/{info.room_name}")):
        status, _ = async_to_sync(call)(app, path, b"{}", method=method, headers={
            "cookie": cookie, "origin": "https://attacker.example", "content-type": "text/plain"})
        assert status == 403, (method, path)
    kept = records.get_document(info.id)
    assert kept is not None and kept.deleted is None, "nothing was deleted"
    # without credentials: 401 as before, not a CSRF refusal
    assert post({"content-type": "text/plain"})[0] == 401
    # the bridge's identity: its Jupyter server checked the request
    status, _ = post({"cookie": cookie, "content-type": "text/plain"}, identity=ALICE)
    assert status == 204
    deleted = records.get_document(info.id)
    assert deleted is not None and deleted.deleted is not None
