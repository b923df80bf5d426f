"""Role links: one role on one document or folder for whoever opens a link, as a named guest.

A link is made by an owner with a role, a target (as a grant's: a document, or a folder) and
a lifetime. Its secret is a random 32-byte token, shown once, in the link; only its SHA-256
is kept, so the database does not hold a working link. The role itself is an ordinary
:class:`~jupyter_ydjango.models.Grant` to a group of the link's own, expiring with the link:
a guest who opened the link carries that group (see :func:`redeem`), so everything roles do
(folder coverage, the highest role, live changes) works for guests unchanged. Revoking a
link deletes its grant, and its guests' open connections are closed like any revoked user's.

The functions block (call them through :func:`~jupyter_ydjango.store.dispatch.run_db`).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jupyter_ydjango.models import ROLES, Grant, RoleLink
from jupyter_ydjango.store.grants import GrantError, Subject, grant, record_change

#: The longest a link may live, and its default lifetime.
MAX_LIFETIME = timedelta(days=365)
DEFAULT_LIFETIME = timedelta(days=7)
#: The prefix of the links' groups (``ydjango-link-<id>``).
GROUP_PREFIX = "ydjango-link-"


class LinkError(ValueError):
    """A link that cannot be made, or opened (``status``: 404 unknown, 410 expired or
    revoked)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LinkInfo:
    id: str
    role: str
    document_id: str | None
    #: the folder's location, ``""`` for a document's link
    folder: str
    group: str
    created_by: str
    created: datetime
    expires: datetime
    revoked: datetime | None
    opened: int


def _info(link: RoleLink) -> LinkInfo:
    return LinkInfo(str(link.id), link.role, str(link.document_id) if link.document_id else None,
                    link.folder, link.group.name, link.created_by, link.created, link.expires,
                    link.revoked, link.opened)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create(role: str, *, document_id: str | None = None, folder: str | None = None,
           lifetime: timedelta = DEFAULT_LIFETIME, by: str = "") -> tuple[LinkInfo, str]:
    """Make a link; its information and its secret (the only time the secret is known)."""
    if role not in ROLES:
        raise LinkError(f"unknown role {role!r} (one of {', '.join(ROLES)})")
    if not timedelta(seconds=1) <= lifetime <= MAX_LIFETIME:
        raise LinkError(f"a link lives from 1 second to {MAX_LIFETIME.days} days")
    secret = secrets.token_urlsafe(32)
    expires = timezone.now() + lifetime
    with transaction.atomic():
        link = RoleLink(secret_hash=hash_secret(secret), role=role, document_id=document_id,
                        folder="" if document_id else (folder or ""), created_by=by,
                        expires=expires)
        link.group = Group.objects.create(name=f"{GROUP_PREFIX}{link.id}")
        try:
            grant(Subject("group", link.group.name), role, document_id=document_id,
                  folder=None if document_id else folder, by=by)
        except GrantError as exc:
            raise LinkError(str(exc)) from exc
        Grant.objects.filter(group=link.group).update(expires=expires)
        link.save()
    return _info(link), secret


def redeem(secret: str) -> LinkInfo:
    """The link of ``secret``, counted as opened once more.

    :raises LinkError: (404) no such link; (410) it expired or was revoked.
    """
    with transaction.atomic():
        link = RoleLink.objects.select_for_update().select_related("group").filter(
            secret_hash=hash_secret(secret)).first()
        if link is None:
            raise LinkError("no such link", 404)
        if link.revoked is not None:
            raise LinkError("this link was revoked", 410)
        if link.expires <= timezone.now():
            raise LinkError("this link expired", 410)
        RoleLink.objects.filter(pk=link.pk).update(opened=F("opened") + 1)
        link.refresh_from_db()
    return _info(link)


def revoke(link_id: str, *, by: str = "") -> LinkInfo:
    """Revoke a link: its grant goes (in the role history, by ``by``), and it opens no more.

    :raises LinkError: (404) no such link.
    """
    try:
        key = uuid.UUID(link_id)
    except ValueError:
        raise LinkError("no such link", 404) from None
    with transaction.atomic():
        link = RoleLink.objects.select_for_update().select_related("group").filter(
            pk=key).first()
        if link is None:
            raise LinkError("no such link", 404)
        for row in Grant.objects.filter(group=link.group):
            record_change(row, row.role, "", by)
            row.delete()
        if link.revoked is None:
            link.revoked = timezone.now()
            link.save(update_fields=["revoked"])
    return _info(link)


def links_on(location: str, document_id: str | None) -> list[LinkInfo]:
    """The links on a document (by id) or on the folder at ``location``."""
    where = Q(document_id=document_id) if document_id else Q(document__isnull=True,
                                                              folder=location.rstrip("/"))
    return [_info(link) for link in RoleLink.objects.filter(where).select_related("group")]
