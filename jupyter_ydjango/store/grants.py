"""Roles on documents and folders: grants to Django users and groups, and what they add up to.

A grant gives one role (:data:`~jupyter_ydjango.models.ROLES`: viewer, editor, runner, each
allowing what the ones before it allow) to one user or one group, on one document (it
follows the document when it is renamed) or on a folder (every document under it, including
files created later). A user's role on a document is the highest of the grants that cover it:
to the user, or to any group of theirs (the groups their identity carries, such as a
JupyterHub's, and their Django groups). Every grant, change and revocation is kept as a
:class:`~jupyter_ydjango.models.RoleChange`, with who made it.

Locations are those of :attr:`~jupyter_ydjango.models.Document.path`: the notebook root,
then the API path. The functions block (call them through
:func:`~jupyter_ydjango.store.dispatch.run_db`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from jupyter_ydjango.models import ROLES, Document, Grant, RoleChange
from jupyter_ydjango.store.records import file_location, live_document_at

SubjectKind = Literal["user", "group"]


class GrantError(ValueError):
    """A grant that cannot be made: an unknown role, target or subject."""


@dataclass(frozen=True)
class Subject:
    """Who a grant is for: a user or a group, by name."""

    kind: SubjectKind
    name: str

    @classmethod
    def parse(cls, text: str) -> Subject:
        """``user:<name>`` or ``group:<name>``."""
        kind, _, name = text.partition(":")
        if kind not in ("user", "group") or not name:
            raise GrantError(f"{text!r} names no user or group (user:NAME or group:NAME)")
        return cls(kind, name)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class GrantInfo:
    """A grant as the API shows it."""

    subject: Subject
    role: str
    #: The document's id, or ``None`` for a folder grant.
    document_id: str | None
    #: The folder's location, or ``""`` for a document grant.
    folder: str
    granted_by: str
    updated: datetime


def rank(role: str | None) -> int:
    """How much a role allows (0: no role)."""
    return 0 if role is None else ROLES.index(role) + 1


def highest(roles: Iterable[str | None]) -> str | None:
    """The role that allows the most, or ``None``."""
    return max(roles, key=rank, default=None)


def folders_above(location: str) -> list[str]:
    """Every folder location that holds ``location`` (``/a/b/c`` -> ``/a``, ``/a/b``), and
    ``location`` itself (a grant on a folder covers that folder's own listing)."""
    parts = location.strip("/").split("/")
    return ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def subject_of(grant: Grant) -> Subject:
    """Whom a grant row is for."""
    return (Subject("user", grant.user.get_username()) if grant.user_id
            else Subject("group", grant.group.name))


def record_change(grant: Grant, before: str, after: str, by: str) -> None:
    """Keep a change of ``grant``'s role (``""``: none) in the role history."""
    RoleChange.objects.create(document_id=grant.document_id, folder=grant.folder,
                              subject=str(subject_of(grant)), before=before, after=after, by=by)


def _info(grant: Grant) -> GrantInfo:
    return GrantInfo(subject_of(grant), grant.role,
                     str(grant.document_id) if grant.document_id else None, grant.folder,
                     grant.granted_by, grant.updated)


def target_of(api_path: str, *, folder: bool = False) -> tuple[str, dict[str, str]]:
    """The location of an API path and the grant target it names: the live document of that
    path (``{"document_id": ...}``), else, or with ``folder``, the folder
    (``{"folder": ...}``)."""
    location = file_location(api_path)
    document = None if folder else live_document_at(api_path)
    if document is not None:
        return location, {"document_id": str(document.id)}
    return location, {"folder": location.rstrip("/")}


def _target(document_id: str | None, folder: str | None) -> Q:
    if (document_id is None) == (folder is None):
        raise GrantError("a grant is on one document or on one folder")
    if document_id is not None:
        if not Document.objects.filter(id=document_id).exists():
            raise GrantError(f"no document {document_id}")
        return Q(document_id=document_id)
    assert folder is not None
    if not folder.startswith("/") or folder.rstrip("/") != folder or "//" in folder:
        raise GrantError(f"{folder!r} is not a folder's location")
    return Q(document__isnull=True, folder=folder)


def _holder(subject: Subject, *, create: bool) -> dict[str, object] | None:
    """The grant fields naming ``subject`` (``{"user": ...}`` or ``{"group": ...}``); ``None``
    for one Django does not know (created instead with ``create``)."""
    if subject.kind == "user":
        users = get_user_model()
        lookup = {users.USERNAME_FIELD: subject.name}
        user = (users.objects.get_or_create(**lookup)[0] if create
                else users.objects.filter(**lookup).first())
        return None if user is None else {"user": user}
    group = (Group.objects.get_or_create(name=subject.name)[0] if create
             else Group.objects.filter(name=subject.name).first())
    return None if group is None else {"group": group}


def grant(subject: Subject, role: str, *, document_id: str | None = None,
          folder: str | None = None, by: str = "") -> GrantInfo:
    """Give ``subject`` the role ``role`` on a document or a folder (replacing the role it
    had there). A user or group named for the first time is created in Django."""
    if role not in ROLES:
        raise GrantError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    target = _target(document_id, folder)
    with transaction.atomic():
        holder = _holder(subject, create=True)
        assert holder is not None
        row = Grant.objects.select_for_update().filter(target, **holder).first()
        before = row.role if row else ""
        if row is None:
            where = {"document_id": document_id} if document_id else {"folder": folder}
            row = Grant(role=role, granted_by=by, **where, **holder)
        row.role, row.granted_by = role, by
        row.save()
        if before != role:
            record_change(row, before, role, by)
    return _info(row)


def revoke(subject: Subject, *, document_id: str | None = None, folder: str | None = None,
           by: str = "") -> bool:
    """Take away ``subject``'s role on a document or a folder; whether it had one there."""
    target = _target(document_id, folder)
    with transaction.atomic():
        holder = _holder(subject, create=False)
        existing = None if holder is None else (
            Grant.objects.select_for_update().filter(target, **holder).first())
        if existing is None:
            return False
        record_change(existing, existing.role, "", by)
        existing.delete()
    return True


def _covering(location: str, document_id: str | None) -> Q:
    # (the same fields on Grant and RoleChange rows)
    folders = Q(document__isnull=True, folder__in=folders_above(location))
    return folders | Q(document_id=document_id) if document_id else folders


def grants_covering(location: str, document_id: str | None = None) -> list[GrantInfo]:
    """The grants that cover a document (by its id) or folder at ``location``: its own, and
    those of every folder above it."""
    rows = Grant.objects.filter(_covering(location, document_id)).select_related(
        "user", "group")
    return [_info(row) for row in rows]


def groups_of(username: str, groups: Iterable[str] = ()) -> set[str]:
    """The groups of a user: ``groups`` (those their identity carries) and their Django
    groups."""
    users = get_user_model()
    mine = set(groups)
    mine.update(Group.objects.filter(
        **{f"user__{users.USERNAME_FIELD}": username}).values_list("name", flat=True))
    return mine


def _granted_to(username: str, groups: Iterable[str]) -> Q:
    """The unexpired grants to ``username`` or to one of their groups (see
    :func:`groups_of`)."""
    users = get_user_model()
    subject = Q(**{f"user__{users.USERNAME_FIELD}": username}) | Q(
        group__name__in=groups_of(username, groups))
    return subject & (Q(expires__isnull=True) | Q(expires__gt=timezone.now()))


def role_of(username: str, location: str, document_id: str | None = None,
            groups: Iterable[str] = ()) -> str | None:
    """The role of ``username`` (a member of ``groups`` and of their Django groups) on the
    document or folder at ``location``: the highest grant covering it, or ``None``."""
    return role_and_expiry(username, location, document_id, groups)[0]


def role_and_expiry(username: str, location: str, document_id: str | None = None,
                    groups: Iterable[str] = ()) -> tuple[str | None, datetime | None]:
    """:func:`role_of`, and when the soonest of the unexpired grants behind it expires (the
    role may drop then), or ``None`` when none does; read in one query."""
    rows = list(Grant.objects.filter(_covering(location, document_id) & _granted_to(
        username, groups)).values_list("role", "expires"))
    roles, expiries = [role for role, _ in rows], [at for _, at in rows if at is not None]
    return highest(roles), min(expiries, default=None)


def granted_below(username: str, folder: str, groups: Iterable[str] = ()) -> list[str]:
    """The locations under ``folder`` (itself excluded) where ``username`` has a grant: the
    documents' and folders' (to list the folders that lead to them)."""
    prefix = folder.rstrip("/") + "/"
    rows = Grant.objects.filter(_granted_to(username, groups) & (Q(folder__startswith=prefix)
                                       | Q(document__path__startswith=prefix)))
    return sorted({row.folder or row.document.path for row in rows.select_related("document")})


def history(location: str, document_id: str | None = None) -> list[RoleChange]:
    """The role changes of a document (by id) and of the folders above it, newest first."""
    return list(RoleChange.objects.filter(_covering(location, document_id)))


#: What each role may do with a document's content (``runner`` also runs its code, which
#: the Jupyter server's authorizer decides).
PERMISSIONS = {"viewer": "read", "editor": "write", "runner": "write"}


def permission_of(username: str, location: str, document_id: str | None = None,
                  groups: Iterable[str] = (), *, can_write: bool = True) -> str | None:
    """What the roles of ``username`` let them do with the document at ``location``:
    ``"write"``, ``"read"`` or ``None``; never more than ``can_write`` (what Jupyter's own
    authorizer allows them) lets them."""
    return permission_for(role_of(username, location, document_id, groups),
                          can_write=can_write)


def permission_for(role: str | None, *, can_write: bool = True) -> str | None:
    """What ``role`` lets its holder do with a document's content (see
    :func:`permission_of`)."""
    permission = PERMISSIONS.get(role) if role else None
    if permission == "write" and not can_write:
        return "read"
    return permission


def rooms_covered(document_id: str | None = None, folder: str | None = None) -> list[str]:
    """The room names of the live documents a grant on ``document_id`` or ``folder`` covers
    (whose connections must hear of a change to it)."""
    if document_id is not None:
        rows = Document.objects.filter(id=document_id, deleted__isnull=True)
    else:
        assert folder is not None
        rows = Document.objects.filter(path__startswith=folder.rstrip("/") + "/",
                                       deleted__isnull=True)
    return [row.room_name for row in rows]
