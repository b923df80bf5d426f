"""Document timelines: a copy of a document moved through its history, and restoring one.

Opening a timeline (:func:`open_timeline`) makes a ``timeline`` fork (see
:mod:`jupyter_ydjango.store.forks`; one per user and document, reused) holding the document
as it is now, and lists the document's points (:mod:`jupyter_ydjango.store.history`): the
frontend connects its copy of the document to the fork's room, and moves it with
:func:`move`. A move edits the copy so that its content is the document's at the point
(cells that differ are replaced), a change every client of the copy receives; the document
itself never changes. :func:`restore` makes the document hold the copy's point, as an edit
of the document (logged, sent to everyone, saved): the copy's own changes are applied to the
document first, so that the frontend, which then connects its copy back to the document,
brings nothing the document does not hold already.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

import pycrdt

from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.documents.fork_room import (
    MergeConflict,
    copy_state,
    drop_fork,
    missing,
    notify_deleted,
)
from jupyter_ydjango.documents.live import document_room
from jupyter_ydjango.documents.room import DocumentRoom
from jupyter_ydjango.formats.builtin import DocumentFormat, FormatError
from jupyter_ydjango.rooms.relay import push_update
from jupyter_ydjango.rooms.room import find_room
from jupyter_ydjango.store import forks, history
from jupyter_ydjango.store.dispatch import run_db, run_io
from jupyter_ydjango.store.records import DocumentInfo

__all__ = ["NoHistory", "move", "open_timeline", "read_timeline", "restore", "restore_point"]


class NoHistory(LookupError):
    """The document has no history yet (its file was never opened)."""


async def read_timeline(info: DocumentInfo, doc_format: DocumentFormat) -> history.Timeline:
    """A document's points, their authors and its state, as the database holds them (at
    least one point). :raises NoHistory:"""
    gap = get_setting("YDJANGO_HISTORY_BURST_GAP")
    snapshots, recent = await run_db(history.read_points, info.id)
    if not snapshots and not recent.rows:
        raise NoHistory(info.path)
    line = await run_io(history.points_of, snapshots, recent, doc_format, gap)
    if not line.points:  # nothing but changes of the state map
        last = max([s[0] for s in snapshots[-1:]] + [r[1] for r in recent.rows])
        line = history.Timeline([last], line.state, [()])
    return line


async def open_timeline(info: DocumentInfo, doc_format: DocumentFormat,
                        owner: str) -> tuple[forks.ForkInfo, list[datetime]]:
    """The timeline's copy of a document ``owner`` moves, showing the document as it is now,
    and the document's points. A user has one copy per document: opened again, the copy they
    have is reused (its clients see it come back to now), so that opening timelines in a
    loop stores nothing more. :raises NoHistory:"""
    room = find_room(info.room_name)
    # the copy is the document as this process holds it, with what the log may not have yet
    local = room.diff() if isinstance(room, DocumentRoom) else None
    line = await read_timeline(info, doc_format)
    points = line.points
    micros = [history.to_micros(p) for p in points]
    state = line.state if local is None else await run_io(pycrdt.merge_updates, line.state,
                                                          local)
    for expired in await run_db(forks.expire_timelines):
        await notify_deleted(expired)
    fork = await _reuse(info, doc_format, owner, state, micros)
    if fork is None:
        fork = await run_db(
            lambda: forks.create_fork(info.id, state, kind="timeline", owner=owner,
                                      points=micros, position=len(points) - 1))
    return fork, points


async def _reuse(info: DocumentInfo, doc_format: DocumentFormat, owner: str, state: bytes,
                 points: list[int]) -> forks.ForkInfo | None:
    """``owner``'s copy of the document, if they have one, made to show ``state`` at the
    last of ``points``: its content replaced (cells that differ), as a move does, so that
    its clients follow; ``None`` if they have none."""
    fork = await run_db(forks.timeline_of, info.id, owner)
    if fork is None:
        return None
    try:
        content = await run_io(_content, doc_format, state)
    except FormatError:
        return None  # a new copy of this state is made (and says why if it cannot load)
    try:
        change = await forks.change_state(
            fork.id, lambda doc: doc_format.replace(doc, copy.deepcopy(content)))
    except forks.ForkGone:
        return None
    if not await run_db(forks.show_points, fork.id, points, len(points) - 1):
        return None
    if change is not None:
        await push_update(fork.id, change)
    return await run_db(forks.get_fork, fork.id)


def _content(doc_format: DocumentFormat, state: bytes) -> Any:
    """The content of a document holding ``state``. :raises FormatError:"""
    doc = pycrdt.Doc()
    doc.apply_update(state)
    return doc_format.read(doc)


async def move(fork: forks.ForkInfo, doc_format: DocumentFormat, steps: int) -> int | None:
    """Move a timeline's copy ``steps`` points (back if negative, clamped to its points);
    the point it shows now, or ``None`` if it cannot move that way. :raises ForkGone:"""
    contents: dict[int, Any] = {}
    while True:  # until no other move or change of the copy interfered
        row = await run_db(forks.read_state, fork.id)
        if row is None:
            raise forks.ForkGone(fork.id)
        state, version, position = row
        current = len(fork.points) - 1 if position is None else position
        target = min(max(current + steps, 0), len(fork.points) - 1)
        if target == current:
            return None
        if target not in contents:
            contents[target] = await history.content_at(
                fork.document_id, doc_format, history.from_micros(fork.points[target]))
        _, new_state, change = await run_io(
            forks.edited, state,
            lambda doc, content=contents[target]: doc_format.replace(doc, copy.deepcopy(content)))
        if await run_db(forks.write_state, fork.id, version, new_state, target):
            break
    if change is not None:
        await push_update(fork.id, change)  # to the copy's room, in every process
    return target


async def restore(fork: forks.ForkInfo, info: DocumentInfo, doc_format: DocumentFormat,
                  author: str = "") -> None:
    """Make the document hold the point the timeline's copy shows, and delete the copy; the
    change is ``author``'s (a user name).

    :raises ForkGone: the copy was deleted meanwhile.
    :raises MergeConflict: the document's file was deleted.
    :raises LoadError: the document's room cannot be loaded.
    """
    state, position = await copy_state(fork)
    point = len(fork.points) - 1 if position is None else position
    content = await history.content_at(fork.document_id, doc_format,
                                       history.from_micros(fork.points[point]))
    async with document_room(info) as room:
        if room.deleted:
            raise MergeConflict(f"{info.path} was deleted")
        with room.changes_by(author):
            room.apply_update(await run_io(missing, state, room.state_vector()))
            doc_format.replace(room.doc, content)  # whatever the document got meanwhile
    await drop_fork(fork.id)


async def restore_point(info: DocumentInfo, doc_format: DocumentFormat,
                        when: datetime, author: str = "") -> bool:
    """Make the document hold its content at time ``when`` again, as an edit of ``author``
    (a user name); whether it changed. :raises MergeConflict: the file was deleted.
    :raises LoadError:"""
    content = await history.content_at(info.id, doc_format, when)
    async with document_room(info) as room:
        if room.deleted:
            raise MergeConflict(f"{info.path} was deleted")
        with room.changes_by(author):
            return doc_format.replace(room.doc, content)
