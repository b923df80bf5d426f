"""Document rows: which file a document is, its session, deletion and renames, save records,
and the names of authors.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jupyter_ydjango.conf import notebook_root
from jupyter_ydjango.models import Author, Document
from jupyter_ydjango.protocol.room_id import RoomId


def database_is_local() -> bool:
    """Whether the database is a file on this machine (SQLite), not a server."""
    from django.db import connection

    return connection.vendor == "sqlite"


def file_location(api_path: str, root: Path | None = None) -> str:
    """What identifies the file of an API path among every server's files: its absolute
    location, the resolved notebook root (``root``, default this process's) then the path.

    Documents are keyed by it (their ``path`` column), not by the API path: two Jupyter
    servers of one user share the embedded database, and their roots often hold the same
    relative names (``Untitled.ipynb``). Roots nested in one another name a file they both
    serve with one location: one document, one history.
    """
    base = (root or notebook_root()).as_posix()
    return f"{base.rstrip('/')}/{api_path}" if api_path else base


def _root_prefix() -> str:
    """The prefix of the locations of the files under this process's notebook root."""
    return notebook_root().as_posix().rstrip("/") + "/"


def api_path_of(location: str) -> str | None:
    """The API path of a location, or ``None`` if it is not under this process's root."""
    prefix = _root_prefix()
    if location == prefix.rstrip("/") or location == prefix:
        return ""
    return location[len(prefix):] if location.startswith(prefix) else None


def _served() -> Any:
    """The documents whose file is under this process's notebook root."""
    return Document.objects.filter(path__startswith=_root_prefix())


@dataclass(frozen=True)
class DocumentInfo:
    """A :class:`~jupyter_ydjango.models.Document` row as plain values, its ``path`` the API
    path under this process's notebook root."""

    id: uuid.UUID
    path: str
    format: str
    type: str
    session_id: uuid.UUID
    file_hash: str
    last_saved: datetime | None
    save_error: str
    #: When the file was last written, as far as the rooms know, and by whom (``room`` or
    #: ``outside``); ``None`` and ``""`` while unknown.
    written_at: datetime | None = None
    written_by: str = ""
    #: When the file was deleted; ``None`` for a live document.
    deleted: datetime | None = None
    #: SHA-256 of the bytes the last save rendered (``""``: unknown).
    content_hash: str = ""

    @classmethod
    def of(cls, row: Document) -> DocumentInfo:
        """The row's values; ``ValueError`` if its file is not under this process's root
        (another server's)."""
        api_path = api_path_of(row.path)
        if api_path is None:
            raise ValueError(f"{row.path} is not under {notebook_root()}")
        return cls(row.id, api_path, row.format, row.type, row.session_id, row.file_hash,
                   row.last_saved, row.save_error, row.written_at, row.written_by,
                   row.deleted, row.content_hash)

    @property
    def room_name(self) -> str:
        """The room id of this document: ``{format}:{type}:{id}``."""
        return str(RoomId(self.format, self.type, str(self.id)))


def get_or_create_document(path: str, format: str, type: str) -> tuple[DocumentInfo, bool]:
    """The document of an API path, created if new; ``(info, created)``.

    Documents whose file was deleted are not reused: a file made again at their path is a new
    document, with a history of its own.
    """
    live = Document.objects.filter(deleted__isnull=True)
    location = file_location(path)
    try:
        row, created = live.get_or_create(path=location,
                                          defaults={"format": format, "type": type})
    except Exception:  # lost a creation race (unique live path): the other one is there now
        row, created = live.get(path=location), False
    if not created and (row.format, row.type) != (format, type):
        Document.objects.filter(pk=row.pk).update(format=format, type=type)
        row.format, row.type = format, type
    return DocumentInfo.of(row), created


def get_document(file_id: str | uuid.UUID) -> DocumentInfo | None:
    """The document with this file id, or ``None`` (also for a malformed id)."""
    try:  # another server's document is unknown here
        return DocumentInfo.of(Document.objects.get(pk=uuid.UUID(str(file_id))))
    except (ValueError, Document.DoesNotExist):
        return None


def document_at(path: str) -> DocumentInfo | None:
    """The document of an API path, the live one if any, else the latest deleted one."""
    row = (Document.objects.filter(path=file_location(path))
           .order_by(F("deleted").desc(nulls_first=True)).first())
    return None if row is None else DocumentInfo.of(row)


def _live_under(path: str) -> Any:
    """The live documents of ``path``: the file, or a directory and what it holds."""
    live = Document.objects.filter(deleted__isnull=True)
    location = file_location(path)
    return live.filter(Q(path=location) | Q(path__startswith=location.rstrip("/") + "/"))


def rename(old_path: str, new_path: str) -> int:
    """Move the documents of ``old_path`` (a file, or a directory and what it holds) to
    ``new_path``, keeping their file ids; returns how many moved. A document whose file the
    rename replaced is marked deleted (its history stays)."""
    moved = 0
    now = timezone.now()
    with transaction.atomic():
        old, new = file_location(old_path), file_location(new_path)
        for row in _live_under(old_path).select_for_update():
            target = new + row.path[len(old):]
            Document.objects.filter(path=target, deleted__isnull=True).exclude(
                pk=row.pk).update(deleted=now)
            row.path = target
            row.save(update_fields=["path"])
            moved += 1
    return moved


def mark_deleted(path: str) -> list[DocumentInfo]:
    """Mark the live documents of ``path`` (a file, or a directory and what it holds) as
    deleted; returns them. Their history stays; their path is free for new documents."""
    now = timezone.now()
    with transaction.atomic():
        rows = list(_live_under(path).select_for_update())
        Document.objects.filter(pk__in=[row.pk for row in rows]).update(deleted=now)
    for row in rows:
        row.deleted = now
    return [DocumentInfo.of(row) for row in rows]


def live_document_at(path: str) -> DocumentInfo | None:
    """The document of ``path`` whose file was not deleted, if any."""
    row = Document.objects.filter(path=file_location(path), deleted__isnull=True).first()
    return None if row is None else DocumentInfo.of(row)


def deleted_documents() -> list[DocumentInfo]:
    """The documents whose file was deleted, the latest deletion first."""
    rows = _served().filter(deleted__isnull=False).order_by("-deleted")
    return [DocumentInfo.of(row) for row in rows]


def undelete(document_id: uuid.UUID, path: str, file_hash: str, size: int) -> None:
    """Make a deleted document live again, its file (just written) at ``path``."""
    now = timezone.now()
    Document.objects.filter(pk=document_id, deleted__isnull=False).update(
        deleted=None, path=file_location(path), file_hash=file_hash, size=size, last_saved=now,
        written_at=now, written_by="room", save_error="",
    )


def mark_document_deleted(document_id: uuid.UUID) -> bool:
    """Mark one document as deleted; True if this call did (it was live)."""
    return bool(Document.objects.filter(pk=document_id, deleted__isnull=True).update(
        deleted=timezone.now()))


#: The names each author was last recorded with by this process (:func:`remember_author`).
_recorded_authors: dict[str, tuple[str, str]] = {}


def remember_author(username: str, name: str, display_name: str) -> None:
    """Record the names of the identity ``username`` (blocking), unless this process
    recorded the same names already."""
    if _recorded_authors.get(username) == (name, display_name):
        return
    Author.objects.update_or_create(username=username, defaults={
        "name": name, "display_name": display_name, "seen": timezone.now()})
    _recorded_authors[username] = (name, display_name)


def author_names(usernames: Iterable[str]) -> dict[str, dict[str, str]]:
    """``{username: {"username", "name", "display_name"}}`` for each of ``usernames``
    (blocking); names never recorded are empty."""
    wanted = set(usernames)
    found = {a.username: a for a in Author.objects.filter(username__in=wanted)}
    return {username: {"username": username,
                       "name": found[username].name if username in found else "",
                       "display_name": found[username].display_name if username in found
                       else ""}
            for username in sorted(wanted)}


def record_save(document_id: uuid.UUID, file_hash: str, size: int, error: str = "",
                content_hash: str = "") -> None:
    """Record a save (the version written, its size, the hash of the bytes rendered) or,
    with ``error``, a failed one."""
    if error:
        Document.objects.filter(pk=document_id).update(save_error=error)
    else:
        now = timezone.now()
        Document.objects.filter(pk=document_id).update(
            file_hash=file_hash, size=size, last_saved=now, save_error="",
            written_at=now, written_by="room", content_hash=content_hash or file_hash,
        )


def record_outside_write(document_id: uuid.UUID, when: datetime) -> None:
    """Record that something other than a room wrote the file, at ``when`` (its mtime)."""
    Document.objects.filter(pk=document_id).update(written_at=when, written_by="outside")

