"""A document's history as points in time, read from the database and kept bounded.

The database holds a document's history as :class:`~jupyter_ydjango.models.Snapshot` rows
and the update log (:class:`~jupyter_ydjango.models.Update` rows). Each snapshot is a point:
one Yjs update holding what changed up to its time since the point before it (the file's
import is the first). The document at time ``t`` is every snapshot and update row up to
``t``, applied in time order (:func:`state_at`).

**Bursts.** Edits come in bursts: changes less than ``YDJANGO_HISTORY_BURST_GAP`` seconds
apart. The timeline (:func:`build_timeline`) has one point per burst that changed the
document's content (changes of its ``state`` map alone, such as a save's hash, make none).

**Compaction** (:func:`compact`) folds the update log into one snapshot per burst
(:func:`fold_log`), then thins old points (:func:`thin`): every burst of the last hour stays
a point; older ones are merged, at most one point per 10 minutes for the last day and one
per hour before that. The import and a deleted file's last content stay points of their
own. A merged point holds only what its period added and kept (the content of items it
added and deleted again is dropped), so a point is never larger than the document.
Boundaries that an open timeline shows (its points) are never merged away.

**Retention.** Points older than ``YDJANGO_HISTORY_KEEP_DAYS`` (a year by default) are
rolled into one base snapshot, the oldest point from then on: the document as it was then.
The history of a document whose file was deleted more than ``YDJANGO_DELETED_KEEP_DAYS``
ago (90 by default) is deleted with it (:func:`purge_deleted`, run by compactions).

The plain functions that read or write the database block; those that replay Yjs updates
take and return bytes and plain values (they run in worker threads): nothing here keeps a
pycrdt object beyond one call. The coroutines (:func:`compact`, :func:`fold_log`,
:func:`thin`, :func:`content_at`) run both kinds off the event loop.
"""

from __future__ import annotations

import bisect
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pycrdt
from django.db import transaction
from django.utils import timezone as dj_timezone

from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.formats.builtin import DocumentFormat
from jupyter_ydjango.models import Document, Fork, Snapshot, Update
from jupyter_ydjango.protocol.engines import update_held
from jupyter_ydjango.protocol.messages import EMPTY_UPDATE
from jupyter_ydjango.store.dispatch import run_db, run_io
from jupyter_ydjango.store.update_log import current_snapshots_key, read_checkpoint, unpack_updates

__all__ = [
    "Change",
    "StoredHistory",
    "Timeline",
    "build_timeline",
    "changes_of",
    "compact",
    "content_at",
    "fold_changes",
    "fold_log",
    "from_micros",
    "group_rows",
    "plan_rollup",
    "plan_thinning",
    "points_of",
    "purge_deleted",
    "read_changes",
    "read_history",
    "read_points",
    "read_recent",
    "state_at",
    "thin",
    "to_micros",
]

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

#: Reasons of snapshots that stay points of their own: never merged with others.
KEPT_REASONS = frozenset({"import", "deleted", "base"})
#: Points younger than this are all kept.
KEEP_ALL = timedelta(hours=1)
#: Points younger than this (and older than :data:`KEEP_ALL`): one per 10 minutes; older
#: ones: one per hour.
KEEP_TEN_MINUTES = timedelta(days=1)
#: Seconds between two thinnings of a document by one process.
THIN_INTERVAL = 600.0


def to_micros(when: datetime) -> int:
    """A time as whole microseconds since the epoch (exact, unlike a float)."""
    return (when - _EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    """The time :func:`to_micros` gave."""
    return _EPOCH + micros * _MICROSECOND


@dataclass(frozen=True)
class Change:
    """A step of a document's history: one snapshot, or the update rows of one burst."""

    #: When the step ended (the snapshot's time, the burst's last row's).
    time: datetime
    #: The Yjs updates of the step.
    updates: tuple[bytes, ...]
    #: The snapshot's reason; ``""`` for update rows.
    reason: str = ""
    #: The snapshot's id, or the rows' ids.
    ids: tuple[int, ...] = ()
    #: The user names of who made the step's updates.
    authors: frozenset[str] = frozenset()
    #: Whether the step changed the document's content (as far as it is known: a snapshot's
    #: flag, a burst's replay); a step that changed only the ``state`` map is no point.
    content: bool = True


@dataclass(frozen=True)
class Timeline:
    """A document's points and its whole state, as the database holds them."""

    #: The end of each burst that changed the document's content, oldest first.
    points: list[datetime] = field(default_factory=list)
    #: The document as of the last change (a Yjs update holding everything).
    state: bytes = EMPTY_UPDATE
    #: For each point, the user names of who made its burst's content changes (sorted).
    authors: list[tuple[str, ...]] = field(default_factory=list)


Row = tuple[int, datetime, bytes]


def _crosses(protected: Sequence[datetime], before: datetime, after: datetime) -> bool:
    """Whether a protected point ``p`` has ``before <= p < after`` (a step must end there)."""
    index = bisect.bisect_left(protected, before)
    return index < len(protected) and protected[index] < after


def group_rows(rows: Iterable[Row], gap: float,
               protected: Sequence[datetime] = ()) -> list[list[Row]]:
    """Update rows ``(id, created, data)`` as bursts, in time order: a row more than ``gap``
    seconds after the one before it starts a new burst, and so does a row after a
    ``protected`` point (sorted) that the row before it precedes or equals."""
    groups: list[list[Row]] = []
    for row in sorted(rows, key=lambda r: (r[1], r[0])):
        if groups:
            last = groups[-1][-1][1]
            if (row[1] - last).total_seconds() <= gap and not _crosses(protected, last, row[1]):
                groups[-1].append(row)
                continue
        groups.append([row])
    return groups


def _merged(updates: Sequence[bytes]) -> bytes:
    if not updates:
        return EMPTY_UPDATE
    return updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates)


# --- reading ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredHistory:
    """A document's snapshots ``(id, created, reason, state)`` and update rows ``(id,
    created, data)``, as the database holds them, and the authors of each (by id)."""

    snapshots: list[tuple[int, datetime, str, bytes]]
    rows: list[Row]
    snapshot_authors: dict[int, frozenset[str]] = field(default_factory=dict)
    row_authors: dict[int, frozenset[str]] = field(default_factory=dict)
    #: The snapshots that changed nothing of the content.
    no_content: frozenset[int] = frozenset()
    #: With :func:`read_recent`: the key of the snapshots its checkpoint stands for.
    checkpoint_key: str = ""


def read_history(document_id: uuid.UUID, until: datetime | None = None) -> StoredHistory:
    """A document's history up to ``until`` (everything if ``None``) (blocking)."""
    snapshots = Snapshot.objects.filter(document_id=document_id)
    rows = Update.objects.filter(document_id=document_id)
    if until is not None:
        snapshots, rows = snapshots.filter(created__lte=until), rows.filter(created__lte=until)
    with transaction.atomic():  # rows first: a compaction meanwhile can only add overlap
        row_values = list(rows.values_list("id", "created", "data", "authors"))
        snapshot_values = list(snapshots.values_list("id", "created", "reason", "state",
                                                     "authors", "content"))
    return StoredHistory(
        [(i, c, r, bytes(s)) for i, c, r, s, _, _ in snapshot_values],
        [(i, c, bytes(d)) for i, c, d, _ in row_values],
        {i: frozenset(a or ()) for i, _, _, _, a, _ in snapshot_values if a},
        {i: frozenset(a or ()) for i, _, _, a in row_values if a},
        frozenset(i for i, _, _, _, _, content in snapshot_values if not content))


#: The reason of the step that stands for every snapshot in :func:`read_recent`.
CHECKPOINT = "checkpoint"


def read_recent(document_id: uuid.UUID) -> StoredHistory:
    """A document's history as its checkpoint (every snapshot, as one step, at the time of
    the latest) and its update rows (blocking): all that a compaction or the document at
    its last point needs, whatever the length of the history."""
    state, latest, key = read_checkpoint(document_id)
    row_values = list(Update.objects.filter(document_id=document_id)
                      .values_list("id", "created", "data", "authors"))
    snapshots = [] if latest is None else [(0, latest, CHECKPOINT, state)]
    return StoredHistory(snapshots, [(i, c, bytes(d)) for i, c, d, _ in row_values], {},
                         {i: frozenset(a or ()) for i, _, _, a in row_values if a},
                         checkpoint_key=key)


def _row_updates(rows: Sequence[Row]) -> tuple[bytes, ...]:
    return tuple(update for _, _, data in rows for update in unpack_updates(data))


def _bursts_of_content(stored: StoredHistory, gap: float, doc_format: DocumentFormat,
                       protected: Sequence[datetime]
                       ) -> list[tuple[list[Row], datetime, set[int]]]:
    """The update rows as bursts of *content* changes, each with the time of its last content
    change and the ids of its rows that changed the content: replayed in time order, a row
    that changes the content more than ``gap`` seconds after the burst's last content change
    starts a new burst; a row that changes only the ``state`` map (a save's hash, the dirty
    flag) joins the burst it follows and neither extends nor ends it. A snapshot between two
    rows, or a ``protected`` point after the row before (see :func:`group_rows`), ends a
    burst too."""
    replay = _Replay(doc_format)
    steps: list[tuple[datetime, int, int, Any]] = [
        (created, 0, snapshot_id, state) for snapshot_id, created, _, state in stored.snapshots]
    steps += [(created, 1, row_id, (row_id, created, data))
              for row_id, created, data in stored.rows]
    steps.sort(key=lambda step: step[:3])
    bursts: list[tuple[list[Row], datetime, set[int]]] = []
    rows: list[Row] = []
    content: set[int] = set()
    content_end: datetime | None = None

    def close() -> None:
        nonlocal rows, content, content_end
        if rows:
            bursts.append((rows, content_end or rows[-1][1], content))
        rows, content, content_end = [], set(), None

    for created, kind, _, payload in steps:
        if kind == 0:
            close()
            replay.apply(Change(created, (payload,)))
            continue
        touched = replay.apply(Change(created, _row_updates([payload])))
        if rows and (_crosses(protected, rows[-1][1], created) or (
                touched and content_end is not None
                and (created - content_end).total_seconds() > gap)):
            close()
        rows.append(payload)
        if touched:
            content.add(payload[0])
            content_end = created
    close()
    return bursts


def changes_of(stored: StoredHistory, gap: float, doc_format: DocumentFormat | None = None,
               protected: Sequence[datetime] = ()) -> list[Change]:
    """A history's steps, oldest first: each snapshot, and the update rows grouped in bursts.

    With ``doc_format``, bursts are bursts of content changes (see
    :func:`_bursts_of_content`) and end at their last content change: an autosave's row a
    moment after an edit does not join that edit's burst to the next one; a burst's authors
    are those of its rows that changed the content. Without it, rows
    are grouped by their times alone (:func:`group_rows`).
    """
    nobody: frozenset[str] = frozenset()
    changes = [Change(created, (state,), reason, (snapshot_id,),
                      stored.snapshot_authors.get(snapshot_id, nobody),
                      snapshot_id not in stored.no_content)
               for snapshot_id, created, reason, state in stored.snapshots]
    if doc_format is None:
        bursts = [(group, group[-1][1], {r[0] for r in group})
                  for group in group_rows(stored.rows, gap, protected)]
    else:
        bursts = _bursts_of_content(stored, gap, doc_format, protected)
    for group, end, credited in bursts:
        # those who changed the content: a client's change of the state map alone (a
        # frontend's dirty flag as it opens the notebook) makes nobody an author
        authors = nobody.union(*(stored.row_authors.get(r[0], nobody) for r in group
                                 if r[0] in credited))
        changes.append(Change(end, _row_updates(group), "", tuple(r[0] for r in group),
                              authors, bool(credited)))
    changes.sort(key=lambda c: (c.time, c.reason == "", c.ids))
    return changes


def read_changes(document_id: uuid.UUID, gap: float, until: datetime | None = None,
                 protected: Sequence[datetime] = (),
                 doc_format: DocumentFormat | None = None) -> list[Change]:
    """A document's history up to ``until`` as steps (:func:`read_history`, then
    :func:`changes_of`) (blocking; it replays the history when given ``doc_format``)."""
    return changes_of(read_history(document_id, until), gap, doc_format, protected)


class _Replay:
    """A scratch document that changes are applied to in time order, telling which of them
    changed the content (and not only the ``state`` map)."""

    def __init__(self, doc_format: DocumentFormat | None = None) -> None:
        self.doc = pycrdt.Doc()
        self._touched = False
        # kept: a subscription that is dropped stops observing
        self._subscriptions = [] if doc_format is None else [
            root.observe_deep(self._on_content) for root in doc_format.content_roots(self.doc)]

    def _on_content(self, _events: Any) -> None:
        self._touched = True

    def apply(self, change: Change) -> bool:
        """Apply a change; whether the content changed."""
        self._touched = False
        update = _merged(change.updates)
        if update != EMPTY_UPDATE:
            self.doc.apply_update(update)
        return self._touched


class _Points:
    """A timeline's points, gathered oldest first: content changes less than ``gap`` seconds
    apart are one point (the later), unless one of them is a point of its own (the import,
    a deletion, the base of the retention); a point's authors are those of the changes it
    holds."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.times: list[datetime] = []
        self._own: list[bool] = []
        self._authors: list[set[str]] = []

    def add(self, time: datetime, own: bool, authors: Iterable[str]) -> None:
        if (self.times and not own and not self._own[-1]
                and (time - self.times[-1]).total_seconds() <= self.gap):
            self.times[-1] = max(time, self.times[-1])
            self._authors[-1].update(authors)
        elif self.times and time < self.times[-1]:  # a row logged with an earlier time
            self._authors[-1].update(authors)
        else:
            self.times.append(time)
            self._own.append(own)
            self._authors.append(set(authors))

    def timeline(self, state: bytes) -> Timeline:
        return Timeline(self.times, state, [tuple(sorted(a)) for a in self._authors])


def build_timeline(changes: Sequence[Change], doc_format: DocumentFormat,
                   gap: float) -> Timeline:
    """The points of a history (from :func:`read_changes`) and the document it ends with:
    each change that changes the content, replayed, gathered as :class:`_Points` says."""
    replay = _Replay(doc_format)
    points = _Points(gap)
    for change in changes:
        if replay.apply(change):
            points.add(change.time, change.reason in KEPT_REASONS, change.authors)
    return points.timeline(replay.doc.get_update())


#: A snapshot's point as :func:`read_points` reads it: ``(created, reason, content,
#: authors)``.
PointRow = tuple[datetime, str, bool, list[str]]


def read_points(document_id: uuid.UUID) -> tuple[list[PointRow], StoredHistory]:
    """What the timeline of a document needs (blocking): its snapshots as points (no
    states: one small row each) and its recent history (:func:`read_recent`)."""
    rows = list(Snapshot.objects.filter(document_id=document_id).order_by("created", "id")
                .values_list("created", "reason", "content", "authors"))
    return rows, read_recent(document_id)


def points_of(snapshots: Sequence[PointRow], recent: StoredHistory,
              doc_format: DocumentFormat, gap: float) -> Timeline:
    """The timeline of :func:`read_points`' answer: the snapshots that changed the content,
    then the log's bursts of content changes, replayed from the checkpoint. The same points
    as :func:`build_timeline` over the whole history, without reading it."""
    points = _Points(gap)
    for created, reason, content, authors in snapshots:
        if content and reason != "compaction":  # an older compaction: the whole state again
            points.add(created, reason in KEPT_REASONS, authors or ())
    replay = _Replay(doc_format)
    for change in changes_of(recent, gap, doc_format):
        if replay.apply(change) and change.reason != CHECKPOINT:
            points.add(change.time, False, change.authors)
    return points.timeline(replay.doc.get_update())


def state_at(changes: Sequence[Change]) -> bytes:
    """The document that ``changes`` (from :func:`read_changes` with ``until``) build."""
    replay = _Replay()
    for change in changes:
        replay.apply(change)
    return replay.doc.get_update()


async def content_at(document_id: uuid.UUID, doc_format: DocumentFormat,
                     when: datetime) -> Any:
    """The content of a document at time ``when`` (as ``doc_format.read`` gives it)."""
    changes = await run_db(read_changes, document_id, 0.0, when)

    def content() -> Any:
        doc = pycrdt.Doc()
        doc.apply_update(state_at(changes))
        return doc_format.read(doc)

    return await run_io(content)


# --- compaction ---------------------------------------------------------------------------


def _protected_points(document_id: uuid.UUID) -> list[datetime]:
    """The points that open timelines of the document show (sorted)."""
    lists = Fork.objects.filter(document_id=document_id, kind="timeline").values_list(
        "points", flat=True)
    return sorted({from_micros(micros) for points in lists for micros in points or ()})


def _read_for_fold(document_id: uuid.UUID) -> tuple[StoredHistory, list[datetime]]:
    return read_recent(document_id), _protected_points(document_id)


def fold_changes(changes: Sequence[Change]) -> tuple[list[tuple[Change, bytes]], bytes]:
    """Each burst of update rows among ``changes`` (from :func:`read_changes`), with what it
    added to the document: replayed, so that it is encoded as compactly as a document is (the
    content of what it added and deleted again is dropped).

    A burst holding an update the replayed document does not hold at the end (its
    dependencies were never logged: they are still on their way from another process, or
    a client sends them when it reconnects) is not folded: a snapshot would leave it out, so
    its rows stay in the log until the dependency arrives.

    Also returns the document all of ``changes`` make (the next checkpoint).
    """
    doc = pycrdt.Doc()
    replayed = []
    for change in changes:
        before = doc.get_state()
        update = _merged(change.updates)
        if update != EMPTY_UPDATE:
            doc.apply_update(update)
        if not change.reason:
            replayed.append((change, doc.get_update(before)))
    state_vector = doc.get_state()
    return [(change, state) for change, state in replayed
            if all(update_held(update, state_vector) for update in change.updates)], \
        doc.get_update()


def _store_fold(document_id: uuid.UUID, folded: Sequence[tuple[Change, bytes]],
                reason: str, checkpoint: bytes | None = None,
                checkpoint_key: str = "") -> list[int]:
    """Replace the folded rows by their snapshots, unless another process folded some of them
    meanwhile; the ids of the rows replaced. ``checkpoint`` (the document the fold's replay
    made, from the checkpoint of the snapshots ``checkpoint_key`` names) becomes the
    document's checkpoint if no snapshot changed meanwhile."""
    ids = [row_id for change, _ in folded for row_id in change.ids]
    snapshots = [Snapshot(document_id=document_id, reason="edit", created=change.time,
                          state=state, authors=sorted(change.authors), content=change.content)
                 for change, state in folded]
    if reason and snapshots:
        snapshots[-1].reason = reason
    elif reason:
        snapshots.append(Snapshot(document_id=document_id, reason=reason, state=EMPTY_UPDATE,
                                  created=dj_timezone.now(), content=False))
    with transaction.atomic():
        # serialises the document's compactions (PostgreSQL; SQLite writes one at a time)
        list(Document.objects.select_for_update().filter(pk=document_id).values_list("pk"))
        rows = Update.objects.filter(document_id=document_id)
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            if rows.filter(id__in=chunk).count() != len(chunk):
                transaction.set_rollback(True)  # folded by another process meanwhile
                return []
            rows.filter(id__in=chunk).delete()
        current = (checkpoint is not None
                   and current_snapshots_key(document_id) == checkpoint_key)
        Snapshot.objects.bulk_create(snapshots)
        if current:
            Document.objects.filter(pk=document_id).update(
                checkpoint=checkpoint, checkpoint_key=current_snapshots_key(document_id))
    return ids


async def fold_log(document_id: uuid.UUID, gap: float, reason: str = "",
                   doc_format: DocumentFormat | None = None) -> list[int]:
    """Replace the document's update rows by one snapshot per burst (of content changes,
    given ``doc_format``: see :func:`changes_of`); the ids of the rows folded (none if
    another process folded some of them meanwhile: it goes on from there).

    With ``reason`` (``deleted``), the last snapshot made is marked with it, or, when the log
    is empty, an empty snapshot marks the time.
    """
    stored, protected = await run_db(_read_for_fold, document_id)
    changes = await run_io(changes_of, stored, gap, doc_format, protected)
    if not reason and all(change.reason for change in changes):
        return []  # no update rows
    folded, checkpoint = await run_io(fold_changes, changes)
    return await run_db(_store_fold, document_id, folded, reason, checkpoint,
                        stored.checkpoint_key)


def _bucket(created: datetime, now: datetime) -> tuple[str, int] | None:
    """The period a point is merged into at ``now``; ``None``: kept as it is."""
    age = now - created
    seconds = to_micros(created) // 1_000_000
    if age < KEEP_ALL:
        return None
    if age < KEEP_TEN_MINUTES:
        return ("10 min", seconds // 600)
    return ("1 h", seconds // 3600)


def plan_thinning(snapshots: Sequence[tuple[int, datetime, str]], now: datetime,
                  protected: Sequence[datetime] = ()) -> list[list[int]]:
    """Which snapshots ``(id, created, reason)`` (in time order) to merge: runs of
    consecutive snapshots of the same period (see the module docstring), each run
    becoming one snapshot; a run ends at a ``protected`` point."""
    runs: list[list[int]] = []
    current: list[int] = []
    key: tuple[str, int] | None = None
    previous: datetime | None = None
    for snapshot_id, created, reason in snapshots:
        bucket = None if reason in KEPT_REASONS else _bucket(created, now)
        if (bucket is not None and bucket == key and previous is not None
                and not _crosses(protected, previous, created)):
            current.append(snapshot_id)
        else:
            if len(current) > 1:
                runs.append(current)
            current = [snapshot_id] if bucket is not None else []
            key = bucket
        previous = created
    if len(current) > 1:
        runs.append(current)
    return runs


def plan_rollup(snapshots: Sequence[tuple[int, datetime, str]], cutoff: datetime,
                protected: Sequence[datetime] = ()) -> list[int]:
    """Which snapshots ``(id, created, reason)`` (in time order) to roll into one base
    snapshot: those made before ``cutoff`` (the retention limit), up to a ``protected``
    point; none if fewer than two."""
    rolled: list[int] = []
    previous: datetime | None = None
    for snapshot_id, created, _ in snapshots:
        if created >= cutoff or (previous is not None and _crosses(protected, previous,
                                                                    created)):
            break
        rolled.append(snapshot_id)
        previous = created
    return rolled if len(rolled) > 1 else []


def _snapshot_times(document_id: uuid.UUID) -> tuple[list[tuple[int, datetime, str]],
                                                     list[datetime]]:
    snapshots = list(Snapshot.objects.filter(document_id=document_id).order_by(
        "created", "id").values_list("id", "created", "reason"))
    return snapshots, _protected_points(document_id)


def _snapshot_states(document_id: uuid.UUID, until: datetime) -> list[tuple[int, datetime, bytes]]:
    rows = Snapshot.objects.filter(document_id=document_id, created__lte=until).order_by(
        "created", "id").values_list("id", "created", "state")
    return [(i, c, bytes(s)) for i, c, s in rows]


def merge_runs(states: Sequence[tuple[int, datetime, bytes]], runs: Sequence[list[int]]
               ) -> list[tuple[list[int], datetime, bytes]]:
    """Each run of snapshots (ids) as one snapshot ``(ids, time, state)``: what the run
    added to the document, replayed (so that what it added and deleted again is dropped)."""
    starts = {run[0]: run for run in runs}
    ends = {run[-1]: run for run in runs}
    doc = pycrdt.Doc()
    before: dict[int, bytes] = {}
    merged = []
    for snapshot_id, created, state in states:
        if snapshot_id in starts:
            before[snapshot_id] = doc.get_state()
        doc.apply_update(state)
        run = ends.get(snapshot_id)
        if run is not None:
            merged.append((run, created, doc.get_update(before[run[0]])))
    return merged


def _replace_runs(document_id: uuid.UUID,
                  merged: Sequence[tuple[list[int], datetime, bytes]],
                  base: Sequence[int] = ()) -> int:
    removed = 0
    with transaction.atomic():
        list(Document.objects.select_for_update().filter(pk=document_id).values_list("pk"))
        # the checkpoint stands for the same document afterwards: it follows if current
        current = Document.objects.filter(
            pk=document_id, checkpoint_key=current_snapshots_key(document_id)).exists()
        for ids, created, state in merged:
            run = Snapshot.objects.filter(document_id=document_id, id__in=ids)
            flags = list(run.values_list("authors", "content"))
            if len(flags) != len(ids):
                continue  # another process thinned them meanwhile
            authors = [run_authors for run_authors, _ in flags]
            reason = "base" if list(ids) == list(base) else "edit"
            Snapshot.objects.create(document_id=document_id, reason=reason, created=created,
                                    content=reason == "base" or any(c for _, c in flags),
                                    state=state,
                                    authors=sorted({a for run_authors in authors
                                                    for a in run_authors or ()}))
            run.delete()
            removed += len(ids) - 1
        if current and removed:
            Document.objects.filter(pk=document_id).update(
                checkpoint_key=current_snapshots_key(document_id))
    return removed


async def thin(document_id: uuid.UUID, now: datetime | None = None) -> int:
    """Merge old points as the module docstring says, and roll those past the retention
    limit (``YDJANGO_HISTORY_KEEP_DAYS``; 0: none) into one base snapshot; how many
    snapshots fewer."""
    now = now or dj_timezone.now()
    snapshots, protected = await run_db(_snapshot_times, document_id)
    keep_days = get_setting("YDJANGO_HISTORY_KEEP_DAYS")
    base = plan_rollup(snapshots, now - timedelta(days=keep_days), protected) \
        if keep_days else []
    rolled = set(base)
    runs = plan_thinning([s for s in snapshots if s[0] not in rolled], now, protected)
    runs = [base, *runs] if base else runs
    if not runs:
        return 0
    last = max(created for snapshot_id, created, _ in snapshots if snapshot_id in
               {run[-1] for run in runs})
    states = await run_db(_snapshot_states, document_id, last)
    merged = await run_io(merge_runs, states, runs)
    return await run_db(_replace_runs, document_id, merged, base)


def purge_deleted(now: datetime | None = None) -> int:
    """Delete the documents whose file was deleted more than ``YDJANGO_DELETED_KEEP_DAYS``
    days ago (0: never), with their whole history; how many (blocking)."""
    keep_days = get_setting("YDJANGO_DELETED_KEEP_DAYS")
    if not keep_days:
        return 0
    cutoff = (now or dj_timezone.now()) - timedelta(days=keep_days)
    doomed = Document.objects.filter(deleted__lt=cutoff)
    count = doomed.count()
    if count:
        doomed.delete()
    return count


_last_thinned: dict[uuid.UUID, float] = {}
_last_purged = -THIN_INTERVAL


async def compact(document_id: uuid.UUID, reason: str = "",
                  doc_format: DocumentFormat | None = None) -> list[int]:
    """Fold the document's update log into snapshots (:func:`fold_log`), and thin its points
    (:func:`thin`, at most every :data:`THIN_INTERVAL` seconds per process); the ids of the
    rows folded."""
    folded = await fold_log(document_id, get_setting("YDJANGO_HISTORY_BURST_GAP"), reason,
                            doc_format)
    now = time.monotonic()
    if now - _last_thinned.get(document_id, -THIN_INTERVAL) >= THIN_INTERVAL:
        _last_thinned[document_id] = now
        await thin(document_id)
    global _last_purged
    if now - _last_purged >= THIN_INTERVAL:
        _last_purged = now
        purged = await run_db(purge_deleted)
        if purged:
            logger.info("purged the history of %d documents deleted long ago", purged)
    return folded
