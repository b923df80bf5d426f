"""The store: the update log and snapshots in the database, and the files on disk.

Everything here is blocking and touches no y-py object: the room calls it through
:func:`run_db` (Django's ``database_sync_to_async``) or :func:`run_io` (a worker thread), and
only bytes and plain values cross the thread boundary.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import stat
import tempfile
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import Document, Snapshot, Update
from .yutils import read_var_byte_array, write_var_uint

T = TypeVar("T")

__all__ = [
    "DocumentInfo",
    "FileState",
    "History",
    "append_updates",
    "claim_file_hash",
    "claim_writer",
    "compact",
    "get_document",
    "get_or_create_document",
    "import_file",
    "load_history",
    "pack_updates",
    "read_file",
    "record_save",
    "release_writer",
    "rename",
    "run_db",
    "run_io",
    "stat_file",
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


@dataclass(frozen=True)
class DocumentInfo:
    """A :class:`~jupyter_ydjango.models.Document` row as plain values."""

    id: uuid.UUID
    path: str
    format: str
    type: str
    session_id: uuid.UUID
    file_hash: str
    last_saved: datetime | None
    save_error: str

    @classmethod
    def of(cls, row: Document) -> DocumentInfo:
        return cls(row.id, row.path, row.format, row.type, row.session_id, row.file_hash,
                   row.last_saved, row.save_error)

    @property
    def room_name(self) -> str:
        """The room id of this document: ``{format}:{type}:{id}``."""
        return f"{self.format}:{self.type}:{self.id}"


def get_or_create_document(path: str, format: str, type: str) -> tuple[DocumentInfo, bool]:
    """The document of an API path, created if new; ``(info, created)``."""
    try:
        row, created = Document.objects.get_or_create(
            path=path, defaults={"format": format, "type": type}
        )
    except Exception:  # lost a creation race (unique path): the other one is there now
        row, created = Document.objects.get(path=path), False
    if not created and (row.format, row.type) != (format, type):
        Document.objects.filter(pk=row.pk).update(format=format, type=type)
        row.format, row.type = format, type
    return DocumentInfo.of(row), created


def get_document(file_id: str | uuid.UUID) -> DocumentInfo | None:
    """The document with this file id, or ``None`` (also for a malformed id)."""
    try:
        return DocumentInfo.of(Document.objects.get(pk=uuid.UUID(str(file_id))))
    except (ValueError, Document.DoesNotExist):
        return None


def rename(old_path: str, new_path: str) -> int:
    """Move the documents of ``old_path`` (a file, or a directory and what it holds) to
    ``new_path``, keeping their file ids; returns how many moved."""
    moved = 0
    with transaction.atomic():
        rows = Document.objects.filter(path=old_path) | Document.objects.filter(
            path__startswith=old_path.rstrip("/") + "/"
        )
        for row in rows.select_for_update():
            target = new_path + row.path[len(old_path):]
            Document.objects.filter(path=target).exclude(pk=row.pk).delete()
            row.path = target
            row.save(update_fields=["path"])
            moved += 1
    return moved


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
        snapshots = list(
            Snapshot.objects.filter(document_id=document_id).order_by("id")
            .values_list("id", "state")
        )
    return History(
        [(i, bytes(s)) for i, s in snapshots],
        [(i, bytes(d)) for i, d in updates],
        bool(imported),
    )


def import_file(document_id: uuid.UUID, state: bytes, file_hash: str) -> int | None:
    """Record the import of a document's file as its first snapshot, unless another process
    already did; returns the snapshot's id, or ``None`` if this process lost the race.

    The ``imported`` flag is set with a conditional update in the same transaction as the
    snapshot is written: exactly one process sees its update match.
    """
    with transaction.atomic():
        won = Document.objects.filter(pk=document_id, imported=False).update(
            imported=True, file_hash=file_hash
        )
        if not won:
            return None
        return Snapshot.objects.create(document_id=document_id, state=state, reason="import").id


def append_updates(document_id: uuid.UUID, updates: list[bytes]) -> int:
    """Append updates to a document's log as one row; returns the row id."""
    return Update.objects.create(
        document_id=document_id, data=pack_updates(updates), count=len(updates)
    ).id


def compact(document_id: uuid.UUID, state: bytes, snapshot_ids: list[int],
            update_ids: list[int]) -> int:
    """Replace the given snapshots and update rows by one snapshot holding ``state``.

    ``state`` must include everything the given rows hold (the room's whole state, encoded
    after it applied them). Rows not listed (written meanwhile, or by other processes) stay.
    Returns the new snapshot's id.
    """
    with transaction.atomic():
        new_id = Snapshot.objects.create(document_id=document_id, state=state).id
        Snapshot.objects.filter(document_id=document_id, id__in=snapshot_ids).delete()
        for start in range(0, len(update_ids), 500):
            Update.objects.filter(
                document_id=document_id, id__in=update_ids[start:start + 500]
            ).delete()
    return new_id


def record_save(document_id: uuid.UUID, file_hash: str, size: int, error: str = "") -> None:
    """Record a save (its hash and size) or, with ``error``, a failed one."""
    if error:
        Document.objects.filter(pk=document_id).update(save_error=error)
    else:
        Document.objects.filter(pk=document_id).update(
            file_hash=file_hash, size=size, last_saved=timezone.now(), save_error=""
        )


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
    process whose update matched (it handles the change on disk)."""
    return bool(
        Document.objects.filter(pk=document_id, file_hash=old_hash).update(file_hash=new_hash)
    )


# --- files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileState:
    """A file's content and what identifies its version."""

    data: bytes
    hash: str
    #: ``(st_mtime_ns, st_size, st_ino)``: changes whenever the file is rewritten.
    signature: tuple[int, int, int]


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def stat_file(path: Path) -> tuple[int, int, int] | None:
    """The file's signature (see :class:`FileState`), or ``None`` if it does not exist."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_file(path: Path) -> FileState:
    """Read a file whole. :raises OSError: it cannot be read (``FileNotFoundError``...)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    return FileState(data, sha256(data), (st.st_mtime_ns, st.st_size, st.st_ino))


def write_file_atomic(path: Path, data: bytes) -> FileState:
    """Replace ``path`` by ``data`` atomically: a temporary file in the same directory, fsynced,
    given the old file's permissions (and owner, where allowed), then renamed over it.

    Readers see the old file or the new one, never a part; a crash leaves the old file.
    """
    try:
        old = path.stat()
    except FileNotFoundError:
        old = None
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
    return FileState(data, sha256(data), (st.st_mtime_ns, st.st_size, st.st_ino))


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
