"""Roles enforced live by the service: a guest whose rights come from grants, on a real
``serve`` process with signed identities (as Jupyter servers in remote mode send them), and
pycrdt clients.

The owner grants, changes and revokes the guest's role through ``/api/ydjango/roles``; the
guest's open connection follows each change without reconnecting: read-only, editable,
read-only again, closed. The delays printed are from the change's answer to the guest's
client hearing of it.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import redis_running
from django_service import DocServer
from notebook_client import DocClient
from signed import signed

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.protocol import close_codes

SECRET = "roles-tests-shared-secret-of-32-bytes!"
TEXT = {"format": "text", "type": "file"}
OWNER = Identity("owner", "write")
GUEST = Identity("guest", "write", roles=True)


class Service:
    """The service, and requests signed for an identity."""

    def __init__(self, server: DocServer) -> None:
        self.server = server

    def call(self, identity: Identity, method: str, path: str,
             body: Any = None) -> tuple[int, Any]:
        return self.server.request(method, path, body, {
            **signed(identity, SECRET, method, path), "Content-Type": "application/json"})

    def session(self, identity: Identity, name: str) -> dict[str, Any]:
        status, body = self.call(identity, "PUT", f"api/collaboration/session/{name}", TEXT)
        assert status in (200, 201), (status, body)
        return body

    def grant(self, subject: str, role: str, path: str, **more: Any) -> None:
        status, body = self.call(OWNER, "PUT", f"api/ydjango/roles/{path}",
                                 {"subject": subject, "role": role, **more})
        assert status == 200, body

    async def open(self, identity: Identity, session: dict[str, Any],
                   sync: bool = True) -> DocClient:
        url = self.server.room_url(session)
        return await DocClient.open(url, "file", headers=signed(identity, SECRET, "GET", url),
                                    sync=sync)


@pytest.fixture(scope="module")
def two_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Service]]:
    """Two ``serve`` processes on one database and root, sharing rooms through Redis."""
    if not redis_running():
        pytest.skip("Redis is not running on 127.0.0.1:6379 (start it to run these tests)")
    tmp = tmp_path_factory.mktemp("roles-redis")
    (tmp / "root").mkdir()
    servers = [DocServer(tmp, tmp / "root", f"server{i}", YDJANGO_ALLOW_ANONYMOUS="0",
                         YDJANGO_IDENTITY_SECRET=SECRET, YDJANGO_IDENTITY_MAX_AGE="60",
                         YDJANGO_REDIS_URL="redis://127.0.0.1:6379/0",
                         YDJANGO_RELAY_HEARTBEAT="1") for i in range(2)]
    yield [Service(server) for server in servers]
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp = tmp_path_factory.mktemp("roles")
    root = tmp / "root"
    (root / "course").mkdir(parents=True)
    server = DocServer(tmp, root, YDJANGO_ALLOW_ANONYMOUS="0", YDJANGO_IDENTITY_SECRET=SECRET,
                       YDJANGO_IDENTITY_MAX_AGE="60")
    yield Service(server)
    server.stop()


def room_read_only(service: Service, identity: Identity, session: dict[str, Any]) -> Any:
    """What the room endpoint (the labextension's status) says: ``readOnly``, or the status
    code of a refusal."""
    status, body = service.call(identity, "GET", f"api/ydjango/rooms/{session['fileId']}")
    return body["readOnly"] if status == 200 else status


def type_into(client: DocClient, text: str) -> None:
    source = client.model._ysource
    source.insert(len(source), text)


async def test_a_guests_role_changes_live(service: Service, tmp_path: Path) -> None:
    """No role: refused (4403). Viewer: joins, its edits refused. Editor: its open connection
    is told ``readOnly: false`` and its edits land. Viewer again: told, and the next edit is
    refused. Revoked: closed with 4403 and a reason."""
    root = service.server.root
    (root / "lecture.txt").write_text("lecture\n")
    session = service.session(OWNER, "lecture.txt")
    owner = await service.open(OWNER, session)
    try:
        refused = await service.open(GUEST, session, sync=False)
        assert await refused.wait_closed() == close_codes.FORBIDDEN
        assert room_read_only(service, GUEST, session) == 403

        service.grant("user:guest", "viewer", "lecture.txt")
        assert room_read_only(service, GUEST, session) is True
        peek = await service.open(GUEST, session)  # a viewer's edits are refused
        type_into(peek, " guest was here")
        await peek.flush()
        assert peek.denied and owner.model.get() == "lecture\n"
        await peek.close()
        # (JupyterLab keeps a viewer from editing: this one does not try, and holds nothing
        # the room refused when it may edit)
        guest = await service.open(GUEST, session)

        start = time.monotonic()
        service.grant("user:guest", "editor", "lecture.txt")
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": False})
        print(f"upgrade heard after {time.monotonic() - start:.3f} s")
        assert room_read_only(service, GUEST, session) is False
        assert room_read_only(service, OWNER, session) is False
        type_into(guest, " +edit")
        await owner.wait_for(lambda m: m.get().endswith(" +edit"))

        start = time.monotonic()
        service.grant("user:guest", "viewer", "lecture.txt")
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": True})
        print(f"downgrade heard after {time.monotonic() - start:.3f} s")
        denied = len(guest.denied)
        type_into(guest, " +late")
        await guest.flush()
        assert len(guest.denied) > denied
        assert not owner.model.get().endswith(" +late")

        start = time.monotonic()
        status, _ = service.call(OWNER, "DELETE", "api/ydjango/roles/lecture.txt",
                                 {"subject": "user:guest"})
        assert status == 200
        assert await guest.wait_closed() == close_codes.FORBIDDEN
        print(f"revocation closed the guest after {time.monotonic() - start:.3f} s")
        assert {"type": "role", "readOnly": True, "revoked": True} in guest.raw
    finally:
        await owner.close()


async def test_edits_sent_as_the_role_drops_are_applied_whole_or_refused(
        service: Service) -> None:
    """An editor types a stream of updates (each inserts one numbered chunk) while the owner
    makes them viewer: the room holds exactly the chunks of the updates it took before the
    change, each whole and in order, and refuses every one after it (one denial each)."""
    (service.server.root / "race.txt").write_text("")
    session = service.session(OWNER, "race.txt")
    service.grant("user:guest", "editor", "race.txt")
    guest = await service.open(GUEST, session)
    try:
        chunks = [f"<{k:03d}:{'x' * 40}>" for k in range(300)]
        loop = asyncio.get_running_loop()
        downgrade = loop.run_in_executor(None, service.grant, "user:guest", "viewer",
                                         "race.txt")
        for chunk in chunks:
            type_into(guest, chunk)
            await asyncio.sleep(0.002)  # (each its own frame, going out as the change is made)
        await downgrade
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": True})
        await guest.flush()
    finally:
        await guest.close()
    reader = await service.open(OWNER, session)  # what the room holds
    try:
        held = reader.model.get()
    finally:
        await reader.close()
    taken = len(held) // len(chunks[0])
    print(f"{taken} of {len(chunks)} updates taken before the downgrade")
    assert held == "".join(chunks[:taken]), held[:400]
    assert len(guest.denied) == len(chunks) - taken


async def test_what_a_viewer_made_does_not_hold_back_its_edits_as_an_editor(
        service: Service) -> None:
    """A viewer's change is refused, and its client keeps it: every later change of that
    client builds on it. Made editor, the client is asked (SYNC step 1) for what the room
    lacks, so its next change lands, with the one refused before, rather than waiting in
    the room for a change that would never come."""
    (service.server.root / "notes.txt").write_text("notes\n")
    session = service.session(OWNER, "notes.txt")
    service.grant("user:guest", "viewer", "notes.txt")
    owner, guest = await service.open(OWNER, session), await service.open(GUEST, session)
    try:
        type_into(guest, " refused")
        await guest.flush()
        assert guest.denied and owner.model.get() == "notes\n"
        service.grant("user:guest", "editor", "notes.txt")
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": False})
        type_into(guest, " +edit")
        await owner.wait_for(lambda m: m.get() == "notes\n refused +edit")
    finally:
        await owner.close()
        await guest.close()


async def test_a_folder_grant_to_a_group_covers_a_later_file(service: Service) -> None:
    """A group's viewer role on a folder: a member (by the groups its identity carries) joins
    a file created afterwards, read-only; someone outside the group is refused."""
    service.grant("group:class", "viewer", "course")
    root = service.server.root
    (root / "course" / "week1.txt").write_text("week 1\n")
    session = service.session(OWNER, "course/week1.txt")
    student = Identity("student", "write", roles=True, groups=("class",))
    member = await service.open(student, session)
    try:
        assert member.model.get() == "week 1\n"
        type_into(member, "!")
        await member.flush()
        assert member.denied
    finally:
        await member.close()
    outsider = await service.open(Identity("outsider", "write", roles=True), session, sync=False)
    assert await outsider.wait_closed() == close_codes.FORBIDDEN


def test_only_the_owner_manages_roles(service: Service) -> None:
    """A guest may list the grants of a path but not change them (403); unknown roles and
    subjects are 400."""
    (service.server.root / "mine.txt").write_text("mine\n")
    service.session(OWNER, "mine.txt")
    status, body = service.call(GUEST, "PUT", "api/ydjango/roles/mine.txt",
                                {"subject": "user:guest", "role": "editor"})
    assert status == 403, body
    assert service.call(OWNER, "PUT", "api/ydjango/roles/mine.txt",
                        {"subject": "user:guest", "role": "owner"})[0] == 400
    assert service.call(OWNER, "PUT", "api/ydjango/roles/mine.txt",
                        {"subject": "guest", "role": "viewer"})[0] == 400
    service.grant("user:guest", "editor", "mine.txt")
    status, listing = service.call(GUEST, "GET", "api/ydjango/roles/mine.txt")
    assert status == 200
    assert [(g["subject"], g["role"], g["on"], g["grantedBy"]) for g in listing["grants"]] == [
        ("user:guest", "editor", "document", "owner")]
    # each reader's own role there (the labextension starts no kernel below runner)
    assert (listing["role"], listing["manage"]) == ("editor", False)
    assert service.call(OWNER, "GET", "api/ydjango/roles/mine.txt")[1]["role"] == "runner"
    assert service.call(Identity("nobody", "write", roles=True), "GET",
                        "api/ydjango/roles/mine.txt")[1]["role"] is None


async def test_a_change_made_in_one_process_reaches_a_guest_in_another(
        two_services: list[Service]) -> None:
    """The owner on one process grants, upgrades and revokes; the guest's connection to the
    other process follows each change, and the guest's edit as an editor reaches the owner
    across the two."""
    first, second = two_services
    (first.server.root / "handout.txt").write_text("handout\n")
    session = first.session(OWNER, "handout.txt")
    owner = await first.open(OWNER, session)
    try:
        first.grant("user:guest", "viewer", "handout.txt")
        guest = await second.open(GUEST, session)
        type_into(guest, " refused")
        await guest.flush()
        assert guest.denied

        start = time.monotonic()
        first.grant("user:guest", "editor", "handout.txt")
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": False})
        print(f"upgrade heard in the other process after {time.monotonic() - start:.3f} s")
        type_into(guest, " +edit")
        await owner.wait_for(lambda m: m.get() == "handout\n refused +edit")

        start = time.monotonic()
        status, _ = first.call(OWNER, "DELETE", "api/ydjango/roles/handout.txt",
                               {"subject": "user:guest"})
        assert status == 200
        assert await guest.wait_closed() == close_codes.FORBIDDEN
        print(f"revocation closed the guest after {time.monotonic() - start:.3f} s")
        refused = await second.open(GUEST, session, sync=False)
        assert await refused.wait_closed() == close_codes.FORBIDDEN
    finally:
        await owner.close()


async def test_the_roles_command_reaches_open_connections(two_services: list[Service]) -> None:
    """``python -m jupyter_ydjango roles``, run as a process of its own on the services'
    database and Redis, grants, upgrades and revokes: the guest's open connection follows."""
    first, second = two_services
    (first.server.root / "command.txt").write_text("command\n")
    session = first.session(OWNER, "command.txt")

    def roles(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "jupyter_ydjango", "roles", *args],
                              env=first.server.env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr

    roles("grant", "user:guest", "viewer", "command.txt")
    guest = await second.open(GUEST, session)
    try:
        roles("grant", "user:guest", "editor", "command.txt")
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": False})
        roles("revoke", "user:guest", "command.txt")
        assert await guest.wait_closed() == close_codes.FORBIDDEN
    finally:
        await guest.close()


class AdminBrowser:
    """A staff member in the service's Django admin, over HTTP: logged in with the admin's
    form, each post carrying the CSRF token of the page it comes from."""

    def __init__(self, service: Service, username: str, password: str) -> None:
        self.origin = f"http://127.0.0.1:{service.server.port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        self.post("/admin/login/", {"username": username, "password": password,
                                    "next": "/admin/"})

    def get(self, path: str) -> str:
        with self.opener.open(self.origin + path, timeout=30) as response:
            return response.read().decode()

    def post(self, path: str, fields: dict[str, str]) -> str:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', self.get(path))
        assert token, f"no CSRF token on {path}"
        data = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token[1]}).encode()
        request = urllib.request.Request(self.origin + path, data=data,
                                         headers={"Referer": self.origin + path})
        with self.opener.open(request, timeout=30) as response:
            return response.geturl()


def django_shell(service: Service, code: str) -> str:
    """Run ``code`` in a Django shell on the service's database; the last line it prints."""
    done = subprocess.run([sys.executable, "-m", "django", "shell", "-c", code],
                          env=service.server.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


async def test_a_change_made_in_the_admin_reaches_the_guest(service: Service) -> None:
    """A staff member changes the guest's grant in the Django admin of the running service:
    editor, then deleted; the guest's open connection follows each change, as with the API.
    (The admin saves in a transaction: told before it commits, the connection read the role
    it was leaving, and missed the change whenever its look-up ran first.)"""
    (service.server.root / "admin.txt").write_text("admin\n")
    session = service.session(OWNER, "admin.txt")
    service.grant("user:guest", "viewer", "admin.txt")
    grant = django_shell(service, (
        "from django.contrib.auth.models import User; "
        "from jupyter_ydjango.models import Grant; "
        "User.objects.create_superuser('staff', 'staff@example.com', 'staff-password'); "
        f"print(Grant.objects.get(document_id='{session['fileId']}', "
        "user__username='guest').pk)"))
    staff = AdminBrowser(service, "staff", "staff-password")
    guest = await service.open(GUEST, session)
    try:
        change = f"/admin/jupyter_ydjango/grant/{grant}/change/"
        form = staff.get(change)
        user_id = re.search(r'name="user" value="(\d+)"', form)
        assert user_id, "the grant's form names no user"
        landed = staff.post(change, {"document": session["fileId"], "folder": "",
                                     "user": user_id[1], "group": "", "role": "editor"})
        assert landed.endswith("/admin/jupyter_ydjango/grant/"), landed
        await guest.wait_raw(lambda m: m == {"type": "role", "readOnly": False})
        staff.post(f"/admin/jupyter_ydjango/grant/{grant}/delete/", {"post": "yes"})
        assert await guest.wait_closed() == close_codes.FORBIDDEN
    finally:
        await guest.close()
    history = django_shell(service, (
        "from jupyter_ydjango.models import RoleChange; "
        f"print([(c.before, c.after, c.by) for c in RoleChange.objects.filter("
        f"document_id='{session['fileId']}').order_by('pk')])"))
    assert history == str([("", "viewer", "owner"), ("viewer", "editor", "staff"),
                           ("editor", "", "staff")])
