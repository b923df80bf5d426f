"""Forks: copies of documents in rooms of their own, stored in the database.

A :class:`~jupyter_ydjango.models.Fork` row holds a copy of a document (its whole state) and
what the API says about it. Two kinds:

* ``fork``: jupyter-collaboration's fork API (``/api/collaboration/fork/{roomId}``), made
  by a user to work on a copy and merge it back (or not); a ``synchronize`` fork keeps
  receiving the document's changes (see :mod:`jupyter_ydjango.documents.fork_room`);
* ``timeline``: the copy that a document timeline moves through the document's history
  (:mod:`jupyter_ydjango.documents.timeline`); deleted when it is restored, or
  :data:`TIMELINE_EXPIRY` after its last use.

Any process can serve a fork's room, move or merge it: writers of the state compare and
swap on the row's ``version`` (:func:`write_state`), applying their change to the state they
read, so that concurrent changes all land. Once a fork is deleted its room's clients are
told (:func:`~jupyter_ydjango.documents.fork_room.notify_deleted`) and closed.

The functions that touch the database block (call them through
:func:`~jupyter_ydjango.store.run_db`); :func:`edited` works on bytes in the calling thread.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pycrdt
from django.db.models import F
from django.utils import timezone

from jupyter_ydjango.models import Fork
from jupyter_ydjango.protocol.messages import EMPTY_UPDATE
from jupyter_ydjango.store.dispatch import run_db, run_io

__all__ = [
    "TIMELINE_EXPIRY",
    "ForkGone",
    "ForkInfo",
    "change_state",
    "create_fork",
    "delete_fork",
    "edited",
    "expire_timelines",
    "get_fork",
    "is_fork_id",
    "list_forks",
    "read_state",
    "show_points",
    "timeline_of",
    "touch",
    "write_state",
]

#: A timeline's copy is deleted this long after its last use (a move, a change, its room
#: unloaded), when another timeline is opened.
TIMELINE_EXPIRY = timedelta(days=1)

_FORK_ID = re.compile(r"[0-9a-f]{32}")


class ForkGone(LookupError):
    """The fork does not exist (any more)."""


def is_fork_id(value: str) -> bool:
    """Whether ``value`` has the form of a fork id (32 lower-case hex digits)."""
    return _FORK_ID.fullmatch(value) is not None


@dataclass(frozen=True)
class ForkInfo:
    """A :class:`~jupyter_ydjango.models.Fork` row, without its state, as plain values."""

    id: str
    document_id: uuid.UUID
    #: The room id of the forked document (``{format}:{type}:{fileId}``).
    root_room: str
    kind: str
    synchronize: bool
    title: str
    description: str
    owner: str
    #: A timeline's points, in microseconds since the epoch.
    points: tuple[int, ...] = ()

    @classmethod
    def of(cls, row: Fork) -> ForkInfo:
        document = row.document
        return cls(row.id, row.document_id, document.room_name, row.kind, row.synchronize,
                   row.title, row.description, row.owner, tuple(row.points or ()))

    def api_info(self) -> dict[str, Any]:
        """The ``fork_info`` of jupyter-collaboration's fork API."""
        return {"root_roomid": self.root_room, "synchronize": self.synchronize,
                "title": self.title, "description": self.description}


def create_fork(document_id: uuid.UUID, state: bytes, *, kind: str = "fork",
                synchronize: bool = False, title: str = "", description: str = "",
                owner: str = "", points: Sequence[int] = (),
                position: int | None = None) -> ForkInfo:
    """Store a new fork holding ``state``; its info (its id is new)."""
    row = Fork.objects.create(
        id=uuid.uuid4().hex, document_id=document_id, kind=kind, synchronize=synchronize,
        title=title, description=description, owner=owner, state=state,
        points=list(points), position=position,
    )
    return ForkInfo.of(Fork.objects.select_related("document").get(pk=row.pk))


def get_fork(fork_id: str) -> ForkInfo | None:
    """The fork with this id, or ``None`` (also for a malformed id)."""
    if not is_fork_id(fork_id):
        return None
    row = Fork.objects.select_related("document").filter(pk=fork_id).first()
    return None if row is None else ForkInfo.of(row)


def timeline_of(document_id: uuid.UUID, owner: str) -> ForkInfo | None:
    """The timeline's copy ``owner`` has of a document, if any (the newest, should two
    timelines opened at once have made two)."""
    row = (Fork.objects.select_related("document")
           .filter(document_id=document_id, kind="timeline", owner=owner)
           .order_by("-created").first())
    return None if row is None else ForkInfo.of(row)


def show_points(fork_id: str, points: Sequence[int], position: int) -> bool:
    """Give a timeline's copy these points, showing the one at ``position``; whether the copy
    still exists."""
    return bool(Fork.objects.filter(pk=fork_id).update(
        points=list(points), position=position, used=timezone.now()))


def list_forks(document_id: uuid.UUID, kind: str = "fork") -> list[ForkInfo]:
    """The forks of a document, oldest first."""
    rows = Fork.objects.select_related("document").filter(document_id=document_id, kind=kind)
    return [ForkInfo.of(row) for row in rows.order_by("created")]


def delete_fork(fork_id: str) -> bool:
    """Delete a fork; whether it existed."""
    deleted, _ = Fork.objects.filter(pk=fork_id).delete()
    return bool(deleted)


def read_state(fork_id: str) -> tuple[bytes, int, int | None] | None:
    """A fork's ``(state, version, position)``, or ``None`` if it does not exist."""
    row = Fork.objects.filter(pk=fork_id).values_list("state", "version", "position").first()
    return None if row is None else (bytes(row[0]), row[1], row[2])


def write_state(fork_id: str, version: int, state: bytes, position: int | None = None) -> bool:
    """Replace a fork's state (and, if given, its position) if its version is still
    ``version``; whether it was (else read it again and redo the change)."""
    values: dict[str, Any] = {"state": state, "version": F("version") + 1,
                              "used": timezone.now()}
    if position is not None:
        values["position"] = position
    return bool(Fork.objects.filter(pk=fork_id, version=version).update(**values))


def touch(fork_id: str) -> None:
    """Note that a fork was used now."""
    Fork.objects.filter(pk=fork_id).update(used=timezone.now())


def expire_timelines() -> list[str]:
    """Delete the timelines' copies unused for :data:`TIMELINE_EXPIRY`; their ids."""
    old = Fork.objects.filter(kind="timeline", used__lt=timezone.now() - TIMELINE_EXPIRY)
    ids = list(old.values_list("id", flat=True))
    Fork.objects.filter(id__in=ids).delete()
    return ids


def edited(state: bytes, edit: Callable[[pycrdt.Doc], Any]) -> tuple[Any, bytes, bytes | None]:
    """Apply ``edit`` to a document holding ``state`` (in the calling thread):
    ``(edit's result, the new state, the change or None if nothing changed)``."""
    doc = pycrdt.Doc()
    doc.apply_update(state)
    changes: list[bytes] = []
    subscription = doc.observe(lambda event: changes.append(event.update))
    result = edit(doc)
    doc.unobserve(subscription)
    changes = [change for change in changes if change != EMPTY_UPDATE]
    if not changes:
        return result, state, None
    change = changes[0] if len(changes) == 1 else pycrdt.merge_updates(*changes)
    return result, doc.get_update(), change


async def change_state(fork_id: str, edit: Callable[[pycrdt.Doc], Any]) -> bytes | None:
    """Apply ``edit`` to a fork's stored state (retried until no other writer interfered);
    the change, or ``None`` if nothing changed. :raises ForkGone:"""
    while True:
        row = await run_db(read_state, fork_id)
        if row is None:
            raise ForkGone(fork_id)
        state, version, _ = row
        _, new_state, change = await run_io(edited, state, edit)
        if change is None or await run_db(write_state, fork_id, version, new_state):
            return change
