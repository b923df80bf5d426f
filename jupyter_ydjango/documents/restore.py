"""Restoring documents from their stored history.

:func:`restore_snapshot` makes a document hold a stored snapshot's content again, as an edit
everyone receives: the snapshot's content is applied to the document's stored history as an
ordinary change (cells that differ are replaced, see
:meth:`~.formats.DocumentFormat.replace`), appended to the update log and pushed to every
process that has the room loaded. History is never rewritten, so clients keep their state and
nothing is duplicated.

:func:`restore_deleted` writes the last content of a document whose file was deleted back to
a file, through the contents manager, and makes the document live again.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

import pycrdt
from asgiref.sync import async_to_sync

from jupyter_ydjango.formats.builtin import FormatError
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.models import Snapshot
from jupyter_ydjango.rooms.relay import push_update
from jupyter_ydjango.store import disk, records, update_log
from jupyter_ydjango.store.contents import files_of
from jupyter_ydjango.store.dispatch import run_db
from jupyter_ydjango.store.history import content_at


class RestoreError(ValueError):
    """The snapshot cannot be restored (unknown, or its document type is not served)."""


async def restore_snapshot(snapshot_id: int) -> bool:
    """Make the document of snapshot ``snapshot_id`` hold its content at the snapshot's time
    again; whether anything changed. Runs its documents on the calling event loop only."""
    row = await run_db(_snapshot, snapshot_id)
    if row is None:
        raise RestoreError(f"no snapshot {snapshot_id}")
    document_id, created = row
    info = await run_db(records.get_document, document_id)
    doc_format = find_format(info.format, info.type) if info else None
    if info is None or doc_format is None:
        raise RestoreError(f"snapshot {snapshot_id}: its document cannot be restored")
    if info.deleted is not None:
        raise RestoreError(f"snapshot {snapshot_id}: the file of {info.path} was deleted; "
                           "restore the deleted file first")
    content = await content_at(document_id, doc_format, created)
    current = history_doc(await run_db(update_log.load_history, document_id))
    before = current.get_state()
    if not doc_format.replace(current, content):
        return False
    change = current.get_update(before)
    await run_db(update_log.append_updates, document_id, [change])
    await push_update(info.room_name, change)
    return True


def _snapshot(snapshot_id: int) -> tuple[uuid.UUID, datetime] | None:
    return Snapshot.objects.filter(pk=snapshot_id).values_list("document_id", "created").first()


def restore_deleted(document_id: str | uuid.UUID, root: Path | None = None) -> str:
    """Write the last content of a document whose file was deleted back to a file, and make
    the document live again (same file id and history: people still in its room go on).

    The file is made through the contents manager, as a room saves (see
    :mod:`~jupyter_ydjango.store.contents`), at the document's path when that is free (no
    file there, no other document), else beside it as ``name.restored-YYYYmmdd-HHMMSS.ext``.
    Runs the database and pycrdt in the calling thread (a view, the admin, the command line),
    the contents manager on the event loop of the caller's ASGI server, if any (a sync view's
    ``async_to_sync``), else on a loop of its own.

    :param root: the notebook root; default: the ``YDJANGO_NOTEBOOK_DIR`` setting.
    :returns: the file's API path.
    :raises RestoreError: no such deleted document, or its content is not a valid file.
    """
    info = records.get_document(document_id)
    if info is None or info.deleted is None:
        raise RestoreError(f"no deleted document {document_id}")
    doc_format = find_format(info.format, info.type)
    if doc_format is None:
        raise RestoreError(f"{info.path}: documents of type {info.format}:{info.type} "
                           "cannot be restored")
    doc = history_doc(update_log.load_history(info.id))
    try:
        content = doc_format.read(doc)
        # written as the document holds it, deviations from the schema included (the file
        # it came from had them, or the document could not have been saved)
        data = doc_format.render(content, doc_format.shape(content))
    except FormatError as exc:
        raise RestoreError(f"{info.path}: the stored content is not a valid file: {exc}") from None
    files = files_of(Path(root) if root is not None else None)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        api_path = info.path if n == 0 else _restored_name(info.path, stamp, n)
        if records.live_document_at(api_path) is not None:
            continue
        try:
            async_to_sync(files.create)(api_path, info.format, info.type, data)
        except FileExistsError:
            continue
        except (OSError, ValueError) as exc:  # PathError is a ValueError
            raise RestoreError(f"{info.path}: cannot write {api_path}: {exc}") from None
        records.undelete(info.id, api_path, disk.sha256(data), len(data))
        return api_path
    raise RestoreError(f"{info.path}: no free name to restore it to")


def _restored_name(api_path: str, stamp: str, n: int) -> str:
    """``dir/name.restored-{stamp}.ext`` (``-{n}`` added after the first)."""
    folder, _, name = api_path.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    suffix = "" if n == 1 else f"-{n}"
    restored = f"{stem}.restored-{stamp}{suffix}{dot}{ext}"
    return f"{folder}/{restored}" if folder else restored


def history_doc(history: update_log.History) -> pycrdt.Doc:
    """A document holding a stored history (its snapshots, then its update log)."""
    doc = pycrdt.Doc()
    for _, state in history.snapshots:
        doc.apply_update(state)
    updates = [update for _, data in history.updates for update in update_log.unpack_updates(data)]
    if updates:
        doc.apply_update(pycrdt.merge_updates(*updates))
    return doc
