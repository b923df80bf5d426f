"""The store: the update log and snapshots in the database, and the files on disk.

Everything here is blocking and touches no document object (only bytes: a checkpoint is
merged with ``pycrdt.merge_updates``): the room calls it through :func:`run_db` (Django's
``database_sync_to_async``) or :func:`run_io` (a worker thread), and only bytes and plain
values cross the thread boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pycrdt
from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import Count, F, Max, Q
from django.utils import timezone

from .conf import notebook_root
from .models import Author, Document, Snapshot, Update
from .paths import PathError
from .yutils import EMPTY_UPDATE, read_var_byte_array, write_var_uint

T = TypeVar("T")

__all__ = [
    "DocumentInfo",
    "FileState",
    "History",
    "append_updates",
    "author_names",
    "claim_file_hash",
    "claim_writer",
    "current_snapshots_key",
    "database_is_local",
    "deleted_documents",
    "document_at",
    "file_location",
    "get_document",
    "get_or_create_document",
    "import_file",
    "live_document_at",
    "load_history",
    "mark_deleted",
    "mark_document_deleted",
    "pack_updates",
    "read_checkpoint",
    "read_file",
    "record_outside_write",
    "record_save",
    "release_writer",
    "remember_author",
    "rename",
    "run_db",
    "run_io",
    "stat_file",
    "undelete",
    "unpack_updates",
    "write_copy",
    "write_file_atomic",
]


async def run_db(func: Callable[..., T], *args: Any) -> T:
    """Run a database function of this module off the event loop."""
    return await database_sync_to_async(func)(*args)


async def run_io(func: Callable[..., T], *args: Any) -> T:
    """Run a file-system or CPU-heavy function off the event loop."""
    return await asyncio.to_thread(func, *args)


# --- the update log's row format ----------------------------------------------------------


def pack_updates(updates: Iterable[bytes]) -> bytes:
    """Several Yjs updates in one row: each as ``varUint(length)`` then its bytes."""
    out = bytearray()
    for update in updates:
        out += write_var_uint(len(update))
        out += update
    return bytes(out)


def unpack_updates(data: bytes) -> list[bytes]:
    """The updates :func:`pack_updates` packed.

    :raises ProtocolError: the data is truncated or malformed.
    """
    updates = []
    pos = 0
    while pos < len(data):
        update, pos = read_var_byte_array(data, pos)
        updates.append(update)
    return updates


# --- documents ----------------------------------------------------------------------------


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


def _api_path_of(location: str) -> str | None:
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
        api_path = _api_path_of(row.path)
        if api_path is None:
            raise ValueError(f"{row.path} is not under {notebook_root()}")
        return cls(row.id, api_path, row.format, row.type, row.session_id, row.file_hash,
                   row.last_saved, row.save_error, row.written_at, row.written_by,
                   row.deleted, row.content_hash)

    @property
    def room_name(self) -> str:
        """The room id of this document: ``{format}:{type}:{id}``."""
        return f"{self.format}:{self.type}:{self.id}"


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


# --- history ------------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """What the database holds of a document's history."""

    #: ``(row id, state)`` of every snapshot.
    snapshots: list[tuple[int, bytes]]
    #: ``(row id, packed updates)`` of every update row.
    updates: list[tuple[int, bytes]]
    #: Whether the file was imported (by any process).
    imported: bool

    @property
    def empty(self) -> bool:
        """No history at all: the file must be imported."""
        return not self.imported and not self.snapshots and not self.updates


def _snapshots_key(count: int, last_id: int | None) -> str:
    return f"{count}:{last_id or 0}"


def current_snapshots_key(document_id: uuid.UUID) -> str:
    """The key of a document's snapshots as they are now (``{count}:{largest id}``): what a
    checkpoint that stands for them all records."""
    found = Snapshot.objects.filter(document_id=document_id).aggregate(n=Count("id"),
                                                                       last=Max("id"))
    return _snapshots_key(found["n"], found["last"])


def read_checkpoint(document_id: uuid.UUID) -> tuple[bytes, datetime | None, str]:
    """Every snapshot of a document merged into one update, the time of the latest, and
    the key of the snapshots it stands for.

    Read from the document's row when it still stands for every snapshot (one row, however
    long the history); otherwise merged from them all, and stored for the next reader.
    """
    with transaction.atomic():
        stored = (Document.objects.filter(pk=document_id)
                  .values_list("checkpoint", "checkpoint_key").first())
        found = Snapshot.objects.filter(document_id=document_id).aggregate(
            n=Count("id"), last=Max("id"), latest=Max("created"))
    key = _snapshots_key(found["n"], found["last"])
    if stored is not None and stored[0] is not None and stored[1] == key:
        return bytes(stored[0]), found["latest"], key
    snapshots = list(Snapshot.objects.filter(document_id=document_id)
                     .order_by("created", "id").values_list("id", "created", "state"))
    key = _snapshots_key(len(snapshots), max((i for i, _, _ in snapshots), default=None))
    states = [bytes(state) for _, _, state in snapshots]
    state = (EMPTY_UPDATE if not states else states[0] if len(states) == 1
             else pycrdt.merge_updates(*states))
    Document.objects.filter(pk=document_id).update(checkpoint=state, checkpoint_key=key)
    return state, (snapshots[-1][1] if snapshots else None), key


def load_history(document_id: uuid.UUID) -> History:
    """Every snapshot and update row of a document, oldest first.

    Another process may import or compact between two of these reads (each read sees what
    was committed when it ran, under PostgreSQL's READ COMMITTED), so they go in the order
    that can only make the history hold more, never less: the import flag first (an import
    commits its flag and its snapshot together), then the update rows, then the snapshots (a
    compaction replaces update rows by a snapshot that holds them).
    """
    with transaction.atomic():
        imported = (Document.objects.filter(pk=document_id)
                    .values_list("imported", flat=True).first())
        updates = list(
            Update.objects.filter(document_id=document_id).order_by("id")
            .values_list("id", "data")
        )
    # the snapshots last, as one: a compaction meanwhile only adds overlap
    state, latest, _ = read_checkpoint(document_id)
    return History(
        [] if latest is None else [(0, state)],
        [(i, bytes(d)) for i, d in updates],
        bool(imported),
    )


def import_file(document_id: uuid.UUID, state: bytes, file_hash: str,
                content_hash: str = "") -> int | None:
    """Record the import of a document's file as its first snapshot, unless another process
    already did; returns the snapshot's id, or ``None`` if this process lost the race.

    The ``imported`` flag is set with a conditional update in the same transaction as the
    snapshot is written: exactly one process sees its update match.
    """
    with transaction.atomic():
        won = Document.objects.filter(pk=document_id, imported=False).update(
            imported=True, file_hash=file_hash, content_hash=content_hash
        )
        if not won:
            return None
        return Snapshot.objects.create(document_id=document_id, state=state, reason="import").id


def append_updates(document_id: uuid.UUID, updates: list[bytes],
                   authors: Sequence[str] = ()) -> int:
    """Append updates, made by ``authors`` (user names), to a document's log as one row;
    returns the row id."""
    return Update.objects.create(
        document_id=document_id, data=pack_updates(updates), count=len(updates),
        authors=sorted(set(authors)),
    ).id


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


def claim_writer(document_id: uuid.UUID, holder: str, lease: float) -> bool:
    """Take or renew the lease to write the document's file for ``lease`` seconds; True if
    ``holder`` has it (it had it, nobody had it, or the last holder's lease lapsed)."""
    now = timezone.now()
    free = Q(writer=holder) | Q(writer="") | Q(writer_until__isnull=True) | Q(writer_until__lt=now)
    return bool(Document.objects.filter(free, pk=document_id).update(
        writer=holder, writer_until=now + timedelta(seconds=lease)
    ))


def release_writer(document_id: uuid.UUID, holder: str) -> None:
    """Give up the lease to write the document's file, if ``holder`` has it."""
    Document.objects.filter(pk=document_id, writer=holder).update(writer="", writer_until=None)


def claim_file_hash(document_id: uuid.UUID, old_hash: str, new_hash: str) -> bool:
    """Move the document's known file hash from ``old_hash`` to ``new_hash``; True for the one
    process whose update matched (it handles the change on disk). Never for a document whose
    file was deleted meanwhile: a file made again at its path is not its content."""
    return bool(Document.objects.filter(
        pk=document_id, file_hash=old_hash, deleted__isnull=True).update(file_hash=new_hash))


# --- files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """A file's content and what identifies its version."""

    data: bytes
    #: Names the version: the SHA-256 of the bytes on disk (or, through a contents manager,
    #: of its signature: see :mod:`jupyter_ydjango.contents`).
    hash: str
    #: Changes whenever the file is rewritten: ``(st_mtime_ns, st_size, st_ino)`` on disk;
    #: a contents manager's ``(last_modified, size)``.
    signature: tuple[Any, ...]
    #: When the file was last written (epoch seconds).
    modified: float = 0.0
    #: The hash Jupyter's contents API gives for this version, where it is not :attr:`hash`
    #: (a contents manager's; ``""``: it gives none).
    api_hash: str | None = None

    @property
    def shown_hash(self) -> str:
        """The hash the frontend knows this version by (it compares it with the document's
        ``state.hash`` before it saves)."""
        return self.hash if self.api_hash is None else self.api_hash


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


#: ``open`` flag that refuses a symbolic link as the last component (none on Windows).
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _became_a_link(path: Path) -> PathError:
    return PathError(f"{path} was replaced by a symbolic link")


def stat_file(path: Path) -> tuple[int, int, int] | None:
    """The file's signature (see :class:`FileState`), or ``None`` if it does not exist.

    ``path`` is a real path (see :func:`~jupyter_ydjango.paths.resolve_in_root`), so its last
    component is no link; one found there now was put there since it was resolved.

    :raises PathError: the file was replaced by a symbolic link.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _became_a_link(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_file(path: Path) -> FileState:
    """Read a file whole, never through a symbolic link (``path`` is a real path: see
    :func:`stat_file`).

    :raises OSError: it cannot be read (``FileNotFoundError``...).
    :raises PathError: the file was replaced by a symbolic link.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _became_a_link(path) from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    return FileState(data, sha256(data), (st.st_mtime_ns, st.st_size, st.st_ino),
                     st.st_mtime_ns / 1e9)


def write_file_atomic(path: Path, data: bytes, replace_only: bool = False) -> FileState:
    """Replace ``path`` by ``data`` atomically: a temporary file in the same directory, fsynced,
    given the old file's permissions (and owner, where allowed), then renamed over it.

    Readers see the old file or the new one, never a part; a crash leaves the old file.
    With ``replace_only``, a file that does not exist (or no longer exists when the new one
    is ready) is not made: :class:`FileNotFoundError`.
    """
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        if replace_only:
            raise
        old = None
    if old is not None and stat.S_ISLNK(old.st_mode):  # never write through, nor over, a link
        raise _became_a_link(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if old is not None:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            with contextlib.suppress(OSError):  # only root may give files away
                os.chown(tmp, old.st_uid, old.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        if replace_only and not path.exists():  # deleted while this was written
            raise FileNotFoundError(errno.ENOENT, "deleted while being saved", str(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    st = path.stat()
    return FileState(data, sha256(data), (st.st_mtime_ns, st.st_size, st.st_ino),
                     st.st_mtime_ns / 1e9)


def write_copy(path: Path, kind: str, data: bytes) -> Path:
    """Keep ``data`` as a recoverable copy beside ``path``: ``name.{kind}-{time}.ext``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        suffix = f"-{n}" if n else ""
        copy = path.with_name(f"{path.stem}.{kind}-{stamp}{suffix}{path.suffix}")
        try:
            with open(copy, "xb") as f:
                f.write(data)
            return copy
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a copy of {path}")
