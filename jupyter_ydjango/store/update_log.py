"""The update log: a document's updates and snapshots in the database, and their row format.

Only bytes: a checkpoint is merged with ``pycrdt.merge_updates``, no document object is made.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import pycrdt
from django.db import transaction
from django.db.models import Count, Max

from jupyter_ydjango.models import Document, Snapshot, Update
from jupyter_ydjango.protocol.messages import EMPTY_UPDATE, read_var_byte_array, write_var_uint


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

