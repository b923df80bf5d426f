"""Restoring a document to a stored snapshot, as an edit everyone receives.

The snapshot's content is applied to the document's stored history as an ordinary change
(cells that differ are replaced, see :meth:`~.formats.DocumentFormat.replace`): the change is
appended to the update log and pushed to every process that has the room loaded. History is
never rewritten, so clients keep their state and nothing is duplicated.
"""

from __future__ import annotations

import uuid

import pycrdt

from . import store
from .consumer import asend_doc_update
from .models import Snapshot
from .store import run_db
from .ydoc_formats import find_format


class RestoreError(ValueError):
    """The snapshot cannot be restored (unknown, or its document type is not served)."""


async def restore_snapshot(snapshot_id: int) -> bool:
    """Make the document of snapshot ``snapshot_id`` hold the snapshot's content again;
    whether anything changed. Runs its documents on the calling event loop only."""
    row = await run_db(_snapshot, snapshot_id)
    if row is None:
        raise RestoreError(f"no snapshot {snapshot_id}")
    document_id, state = row
    info = await run_db(store.get_document, document_id)
    doc_format = find_format(info.format, info.type) if info else None
    if info is None or doc_format is None:
        raise RestoreError(f"snapshot {snapshot_id}: its document cannot be restored")
    target = pycrdt.Doc()
    target.apply_update(state)
    content = doc_format.read(target)
    history = await run_db(store.load_history, document_id)
    current = pycrdt.Doc()
    updates = [snapshot_state for _, snapshot_state in history.snapshots]
    for _, data in history.updates:
        updates.extend(store.unpack_updates(data))
    if updates:
        current.apply_update(pycrdt.merge_updates(*updates))
    before = current.get_state()
    if not doc_format.replace(current, content):
        return False
    change = current.get_update(before)
    await run_db(store.append_updates, document_id, [change])
    await asend_doc_update(info.room_name, change)
    return True


def _snapshot(snapshot_id: int) -> tuple[uuid.UUID, bytes] | None:
    row = Snapshot.objects.filter(pk=snapshot_id).values_list("document_id", "state").first()
    return None if row is None else (row[0], bytes(row[1]))
