"""Roles on documents and folders (:mod:`jupyter_ydjango.store.grants`), on the test database."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command

from jupyter_ydjango.models import Document, Grant
from jupyter_ydjango.store import grants
from jupyter_ydjango.store.grants import GrantError, Subject
from jupyter_ydjango.store.records import file_location


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", interactive=False, verbosity=0)


@pytest.fixture
def root() -> str:
    return f"/srv/{uuid.uuid4().hex}"


def document(location: str) -> str:
    return str(Document.objects.create(path=location).id)


def user(name: str) -> Subject:
    return Subject("user", name)


def test_a_folder_grant_covers_files_created_later(root: str) -> None:
    name = f"ann-{uuid.uuid4().hex[:6]}"
    grants.grant(user(name), "viewer", folder=f"{root}/lectures", by="owner")
    later = document(f"{root}/lectures/week1/intro.ipynb")
    assert grants.role_of(name, f"{root}/lectures/week1/intro.ipynb", later) == "viewer"
    assert grants.role_of(name, f"{root}/lectures", None) == "viewer"  # the folder itself
    assert grants.role_of(name, f"{root}/lectures-old/a.ipynb", document(
        f"{root}/lectures-old/a.ipynb")) is None  # a sibling with the same prefix
    assert grants.role_of(name, f"{root}/other.ipynb") is None


def test_overlapping_grants_give_the_highest_role(root: str) -> None:
    name = f"bob-{uuid.uuid4().hex[:6]}"
    notebook = document(f"{root}/course/hw.ipynb")
    grants.grant(user(name), "viewer", folder=f"{root}/course")
    grants.grant(user(name), "editor", document_id=notebook)
    assert grants.role_of(name, f"{root}/course/hw.ipynb", notebook) == "editor"
    grants.grant(user(name), "runner", folder=root)
    assert grants.role_of(name, f"{root}/course/hw.ipynb", notebook) == "runner"
    grants.revoke(user(name), folder=root)
    assert grants.role_of(name, f"{root}/course/hw.ipynb", notebook) == "editor"


def test_a_group_grant_and_its_revocation_reach_every_member(root: str) -> None:
    tas = f"tas-{uuid.uuid4().hex[:6]}"
    notebook = document(f"{root}/lecture.ipynb")
    members = [f"ta{n}-{uuid.uuid4().hex[:6]}" for n in range(2)]
    group = Group.objects.create(name=tas)
    for name in members:
        User.objects.create(username=name).groups.add(group)
    grants.grant(Subject("group", tas), "editor", document_id=notebook, by="teacher")
    # a Django member, and a user whose identity says it is in the group (a hub's groups)
    assert [grants.role_of(m, f"{root}/lecture.ipynb", notebook) for m in members] == [
        "editor", "editor"]
    assert grants.role_of("hub-user", f"{root}/lecture.ipynb", notebook, groups=[tas]) == (
        "editor")
    assert grants.role_of("hub-user", f"{root}/lecture.ipynb", notebook) is None
    assert grants.revoke(Subject("group", tas), document_id=notebook, by="teacher")
    assert [grants.role_of(m, f"{root}/lecture.ipynb", notebook) for m in members] == [
        None, None]
    assert not grants.revoke(Subject("group", tas), document_id=notebook)


def test_a_document_grant_follows_a_rename(root: str) -> None:
    name = f"cy-{uuid.uuid4().hex[:6]}"
    notebook = document(f"{root}/draft.ipynb")
    grants.grant(user(name), "editor", document_id=notebook)
    Document.objects.filter(id=notebook).update(path=f"{root}/final.ipynb")
    assert grants.role_of(name, f"{root}/final.ipynb", notebook) == "editor"


def test_changing_a_role_replaces_it_and_history_says_who(root: str) -> None:
    name = f"dee-{uuid.uuid4().hex[:6]}"
    notebook = document(f"{root}/a.ipynb")
    grants.grant(user(name), "viewer", document_id=notebook, by="owner")
    grants.grant(user(name), "editor", document_id=notebook, by="staff")
    grants.grant(user(name), "editor", document_id=notebook, by="staff")  # no change
    grants.revoke(user(name), document_id=notebook, by="owner")
    grants.grant(user(name), "viewer", folder=root, by="owner")
    changes = [(c.subject, c.before, c.after, c.by)
               for c in grants.history(f"{root}/a.ipynb", notebook)]
    assert changes == [(f"user:{name}", "", "viewer", "owner"),
                       (f"user:{name}", "editor", "", "owner"),
                       (f"user:{name}", "viewer", "editor", "staff"),
                       (f"user:{name}", "", "viewer", "owner")]
    assert [(g.subject, g.role) for g in grants.grants_covering(f"{root}/a.ipynb", notebook)] == [
        (user(name), "viewer")]


def test_what_a_user_is_granted_below_a_folder(root: str) -> None:
    name = f"eve-{uuid.uuid4().hex[:6]}"
    deep = document(f"{root}/a/b/c.ipynb")
    grants.grant(user(name), "viewer", document_id=deep)
    grants.grant(user(name), "viewer", folder=f"{root}/x")
    assert grants.granted_below(name, root) == [f"{root}/a/b/c.ipynb", f"{root}/x"]
    assert grants.granted_below(name, f"{root}/a") == [f"{root}/a/b/c.ipynb"]
    assert grants.granted_below(name, f"{root}/y") == []


@pytest.mark.parametrize(("role", "kwargs", "message"), [
    ("owner", {"folder": "/srv"}, "unknown role"),
    ("viewer", {"folder": "relative"}, "not a folder"),
    ("viewer", {"folder": "/srv/"}, "not a folder"),
    ("viewer", {}, "one document or on one folder"),
    ("viewer", {"document_id": str(uuid.uuid4())}, "no document"),
])
def test_grants_that_cannot_be_made(role: str, kwargs: dict, message: str) -> None:
    with pytest.raises(GrantError, match=message):
        grants.grant(user("x"), role, **kwargs)


def test_subjects_are_parsed() -> None:
    assert Subject.parse("group:tas") == Subject("group", "tas")
    assert str(Subject.parse("user:a:b")) == "user:a:b"
    for bad in ("tas", "role:x", "user:"):
        with pytest.raises(GrantError):
            Subject.parse(bad)


def test_the_roles_command(tmp_path: Path) -> None:
    """``python -m django roles``: a document's grant, a folder's, the list, a revocation."""
    api = f"{uuid.uuid4().hex[:8]}"
    Document.objects.create(path=file_location(f"{api}/notes.ipynb"))
    name = f"fay-{uuid.uuid4().hex[:6]}"

    def roles(*args: str) -> str:
        out = io.StringIO()
        call_command("roles", *args, stdout=out)
        return out.getvalue()

    assert roles("grant", f"user:{name}", "editor", f"{api}/notes.ipynb", "--by", "me") == (
        f"user:{name}: editor on {api}/notes.ipynb\n")
    assert "viewer on" in roles("grant", "group:class", "viewer", api)
    listed = roles("list", f"{api}/notes.ipynb").splitlines()
    assert sorted(line.split("\t")[:3] for line in listed) == [
        ["group:class", "viewer", file_location(api) + "/"],
        [f"user:{name}", "editor", "this document"]]
    assert roles("revoke", f"user:{name}", f"{api}/notes.ipynb").endswith("revoked on "
                                                                           f"{api}/notes.ipynb\n")
    with pytest.raises(CommandError, match="has no role"):
        roles("revoke", f"user:{name}", f"{api}/notes.ipynb")
    with pytest.raises(CommandError, match="not allowed"):
        roles("list", "../elsewhere")


def test_the_admin_records_who_granted(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A grant made on the admin's grant page is in the document's role history, by the
    admin's user, and is announced to the document's open connections; the document's page
    shows its grants and that history; a deletion is announced too."""
    from django.test import Client

    from jupyter_ydjango import admin as ours

    announced: list[tuple[str | None, str | None]] = []
    monkeypatch.setattr(ours, "announce_grant_change",
                        lambda document_id, folder: announced.append((document_id, folder)))

    admin = User.objects.create_superuser(f"admin-{uuid.uuid4().hex[:6]}", "a@example.com", "pw")
    guest = User.objects.create(username=f"gus-{uuid.uuid4().hex[:6]}")
    notebook = document(f"{root}/admin.ipynb")
    client = Client(HTTP_HOST="localhost")
    client.force_login(admin)
    response = client.post("/admin/jupyter_ydjango/grant/add/",
                           {"document": notebook, "folder": "", "user": guest.pk,
                            "role": "editor"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert [(c.subject, c.after, c.by) for c in grants.history(f"{root}/admin.ipynb",
                                                               notebook)] == [
        (f"user:{guest.username}", "editor", admin.username)]
    assert announced == [(notebook, "")]
    page = client.get(f"/admin/jupyter_ydjango/document/{notebook}/change/")
    assert page.status_code == 200
    assert page.content.count(guest.username.encode()) >= 2  # the grant and its history
    grant = Grant.objects.get(document_id=notebook)
    response = client.post(f"/admin/jupyter_ydjango/grant/{grant.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert announced == [(notebook, ""), (notebook, "")]
    assert grants.role_of(guest.username, f"{root}/admin.ipynb", notebook) is None
