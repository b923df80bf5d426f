"""The consumers of the shipped application: JupyterLab's document rooms, its awareness room,
forks' rooms, and the seed-style rooms of ``/ws/<room>``.

Each is a :class:`~jupyter_ydjango.consumer.YjsConsumer` that decides who may connect and
which room a connection joins; the rooms do the rest.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

import pycrdt
from django.utils import timezone

from jupyter_ydjango.api.identity import SCOPE_KEY, Identity
from jupyter_ydjango.api.middleware import ERROR_KEY
from jupyter_ydjango.api.roles import ROLES_CHANGED
from jupyter_ydjango.conf import get_setting
from jupyter_ydjango.consumer import YjsConsumer
from jupyter_ydjango.documents.fork_room import ForkRoom
from jupyter_ydjango.documents.room import DocumentRoom, LoadError, new_room
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.messages import (
    create_raw_json_message,
    read_raw_request,
)
from jupyter_ydjango.protocol.room_id import RoomId
from jupyter_ydjango.rooms.budgets import OverBudget
from jupyter_ydjango.rooms.room import Room, find_room
from jupyter_ydjango.store import forks, grants, records
from jupyter_ydjango.store.dispatch import run_db

logger = logging.getLogger(__name__)

#: How long after a grant's expiry its connections look their role up again, in seconds:
#: the database compares expiries with its own clock, which may be a little behind ours.
EXPIRY_MARGIN = 0.05


class RoomConsumer(YjsConsumer):
    """The consumer of the shipped application: Django-authenticated users only.

    Anonymous clients are refused (close 4401 before the handshake completes) unless the
    ``YDJANGO_ALLOW_ANONYMOUS`` setting is true (development only).
    """

    async def connect(self) -> None:
        user = self.scope.get("user")
        authenticated = user is not None and user.is_authenticated
        if not authenticated and not get_setting("YDJANGO_ALLOW_ANONYMOUS"):
            logger.info("refused an unauthenticated client for %s", self.scope.get("path"))
            await self.close(close_codes.UNAUTHORIZED)
            return
        await super().connect()


class IdentifiedConsumer(YjsConsumer):
    """A consumer that needs the identity set by :class:`~.middleware.IdentityMiddleware`."""

    async def refuse(self, code: int, reason: str = "") -> None:
        """Refuse the client with a close code it can read (a websocket refused before the
        handshake only gets an HTTP 403, whatever the reason), and a short reason."""
        await self.accept()
        await self.close(code, reason or None)

    async def connect(self) -> None:
        self.identity = self.scope.get(SCOPE_KEY)
        if self.identity is None:
            logger.info("refused %s: %s", self.scope.get("path"),
                        self.scope.get(ERROR_KEY) or "no identity")
            await self.refuse(close_codes.UNAUTHORIZED)
            return
        self.read_only = self.read_only or not self.identity.can_write
        await super().connect()

    def author_name(self) -> str:
        return self.identity.username

    def awareness_user(self) -> dict[str, str]:
        shown = {"username": self.identity.username}
        for key in ("name", "display_name", "initials", "color"):
            value = getattr(self.identity, key)
            if value:
                shown[key] = value
        return shown


class AwarenessConsumer(IdentifiedConsumer):
    """A transient awareness-only room (``JupyterLab:globalAwareness``): presence, no document.

    Nothing is stored and the room's document cannot be changed.
    """

    def make_room_name(self) -> str:
        return self.scope["url_route"]["kwargs"]["room_id"]

    async def connect(self) -> None:
        self.read_only = True
        await super().connect()


class DocumentConsumer(IdentifiedConsumer):
    """The rooms of JupyterLab's collaborative documents: ``{format}:{type}:{fileId}``.

    The room's document is a file under the notebook root, stored in the database and saved
    back (:class:`~jupyter_ydjango.documents.room.DocumentRoom`). Clients are refused with a close
    code before the handshake: 4400 a document type no format serves (see
    :func:`~jupyter_ydjango.formats.ydoc.find_format`), 4401 no identity, 4404 unknown room or
    file, 4403 a path outside the root, 4409 a ``sessionId`` of another history, 4422 a file
    that is not a document of the room's type (what Jupyter refuses to open: the close reason
    says why, in a sentence for its users), 4500 a file that cannot be loaded.
    A RAW ``save`` request saves now and is answered ``{"type": "save", "responseTo": id,
    "status": "success" | "skipped" | "failed"}``: ``"success"`` whenever the file holds the
    document (whoever wrote it), ``"failed"`` when it cannot be written.
    """

    room_class = DocumentRoom
    #: Save requests of one connection that may wait for their answer; one more closes the
    #: connection with 4429.
    max_waiting_saves = 100

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting_saves = 0
        self._expiry_check: asyncio.TimerHandle | None = None

    def make_room_name(self) -> str:
        return self.document.room_name

    async def connect(self) -> None:
        room_id = self.scope["url_route"]["kwargs"]["room_id"]
        file_format, file_type, file_id = parsed = RoomId.parse(room_id)
        doc_format = find_format(file_format, file_type)
        if doc_format is None:
            logger.info("refused room %s: unknown document type", room_id)
            await self.refuse(close_codes.UNKNOWN_TYPE,
                              f"unknown document type {parsed.kind!r}")
            return
        loaded = find_room(room_id)  # a co-editor joining: no database query
        if isinstance(loaded, DocumentRoom):
            document = loaded.document
        else:
            document = await run_db(records.get_document, file_id)
        if document is None or (document.format, document.type) != (file_format, file_type):
            logger.info("refused room %s: no such document", room_id)
            await self.refuse(close_codes.NOT_FOUND)
            return
        session_id = parse_qs(self.scope.get("query_string", b"").decode()).get("sessionId")
        if session_id and session_id[0] and session_id[0] != str(document.session_id):
            logger.info("refused room %s: unknown session %s", room_id, session_id[0])
            await self.refuse(close_codes.STALE_SESSION)
            return
        self.document, self.doc_format = document, doc_format
        identity = self.scope.get(SCOPE_KEY)  # (none: refused below)
        expires = None
        if identity is not None and identity.roles:
            permission, expires = await run_db(self._permission, identity)
            if permission is None:
                logger.info("refused room %s: %s has no role on it", room_id,
                            identity.username)
                await self.refuse(close_codes.FORBIDDEN, "you have no role on this document")
                return
            self.read_only = self.read_only or permission != "write"
        try:
            await super().connect()
        except LoadError as exc:
            logger.error("room %s: cannot load: %s", room_id, exc)
            await self.refuse(exc.code, exc.summary)
            return
        if self.peer is not None and identity.roles:
            self._recheck_at(expires)
        if self.peer is not None and not self.read_only:
            try:  # the names the timeline's authors are shown with
                await run_db(records.remember_author, self.identity.username,
                             self.identity.name, self.identity.display_name)
            except Exception as exc:  # the names can wait; the edits must not
                logger.warning("room %s: cannot record the names of %s: %r", room_id,
                               self.identity.username, exc)

    async def make_room(self) -> Room:
        return new_room(self.document, self.doc_format)

    def _permission(self, identity: Identity) -> tuple[str | None, datetime | None]:
        """What ``identity``'s roles let it do with the document (blocks: the grants are
        read from the database): ``"write"``, ``"read"`` or ``None``; and when the soonest
        grant behind it expires (``None``: none does)."""
        role, expires = grants.role_and_expiry(
            identity.username, records.file_location(self.document.path),
            str(self.document.id), identity.groups)
        return grants.permission_for(role, can_write=identity.can_write), expires

    def _recheck_at(self, expires: datetime | None) -> None:
        """Look the role up again when a grant behind it expires (a role link's, an expiring
        grant's): nothing announces an expiry, so the connection keeps its own time."""
        if self._expiry_check is not None:
            self._expiry_check.cancel()
            self._expiry_check = None
        if expires is None:
            return
        delay = max(0.0, (expires - timezone.now()).total_seconds()) + EXPIRY_MARGIN
        loop = asyncio.get_running_loop()
        self._expiry_check = loop.call_later(
            delay, lambda: loop.create_task(self.roles_changed({"type": ROLES_CHANGED,
                                                                 "expired": True})))

    async def disconnect(self, code: int) -> None:
        self._recheck_at(None)  # (no more looking up)
        await super().disconnect(code)

    async def roles_changed(self, event: dict[str, Any]) -> None:
        """A grant covering the document changed (``roles.changed`` on the room's group, from
        any process): a connection whose rights come from roles looks its role up again and
        is told ``{"type": "role", "readOnly": bool}`` as a RAW message; it turns read-only
        or editable from its next message on (a change sent before is applied, one sent
        after is refused; made editable, it is sent a SYNC step 1, so that what it made while
        it could only read, on which its next changes build, comes in now), or, with no
        role left, is told ``{"type": "role", "readOnly": true, "revoked": true}`` and
        closed with 4403 and a reason. The connection also looks its role up when a grant
        behind it expires (``"expired": true`` in the event, and then in the notice, when
        that leaves no role)."""
        if not self.identity.roles or self.peer is None:
            return
        permission, expires = await run_db(self._permission, self.identity)
        if self.peer is None:
            return
        self._recheck_at(expires)
        if permission is None:
            logger.info("room %s: %s lost their role: closing", self.room_name,
                        self.identity.username)
            expired = event.get("expired") is True
            notice = {"type": "role", "readOnly": True, "revoked": True}
            if expired:
                notice["expired"] = True
            # said first as a message: daphne drops close reasons
            await self.send(bytes_data=create_raw_json_message(notice))
            await self._leave()
            await self.close(close_codes.FORBIDDEN, "your role on this document "
                             + ("expired" if expired else "was revoked"))
            return
        read_only = permission != "write"
        if read_only != self.read_only:
            self.read_only = read_only
            self.peer.push(create_raw_json_message({"type": "role", "readOnly": read_only}))
            if not read_only:
                self.room.ask_for_missing(self.peer)

    async def receive_raw(self, payload: bytes) -> None:
        """A ``save`` request: answered once the room's next requested save is done (see
        :meth:`~jupyter_ydjango.documents.room.DocumentRoom.request_save`)."""
        action, request_id = read_raw_request(payload)
        if action == "save":
            if self._waiting_saves >= self.max_waiting_saves:
                raise OverBudget(close_codes.TOO_MANY, f"more than {self.max_waiting_saves} "
                                 "save requests waiting", "saves")
            self._waiting_saves += 1
            asyncio.get_running_loop().create_task(self._save(request_id))

    async def _save(self, request_id: int | None) -> None:
        # A reader's request saves too (as jupyter-collaboration's): it writes what the
        # room's writers made, nothing of the reader's own.
        room, peer = self.room, self.peer
        try:
            status = await room.request_save()
        except Exception:
            logger.exception("room %s: save failed", self.room_name)
            status = "failed"
        finally:
            self._waiting_saves -= 1
        if peer is not None:
            peer.push(create_raw_json_message(
                {"type": "save", "responseTo": request_id, "status": status}
            ))


class ForkConsumer(IdentifiedConsumer):
    """Clients of a fork's room (see the module docstring)."""

    def make_room_name(self) -> str:
        return self.fork.id

    async def connect(self) -> None:
        fork_id = self.scope["url_route"]["kwargs"]["room_id"]
        fork = await run_db(forks.get_fork, fork_id)
        document = None if fork is None else await run_db(records.get_document, fork.document_id)
        if fork is None or document is None or find_format(document.format,
                                                           document.type) is None:
            logger.info("refused room %s: no such fork", fork_id)
            await self.refuse(close_codes.NOT_FOUND)
            return
        session_id = self.query_value("sessionId")
        if session_id and session_id != str(document.session_id):
            logger.info("refused fork %s: unknown session %s", fork_id, session_id)
            await self.refuse(close_codes.STALE_SESSION)
            return
        self.fork, self.document = fork, document
        try:
            await super().connect()
        except LoadError as exc:
            logger.info("refused fork %s: %s", fork_id, exc)
            await self.refuse(exc.code)

    def query_value(self, name: str) -> str:
        """A query parameter of the connection (``""`` if absent)."""
        values = parse_qs(self.scope.get("query_string", b"").decode()).get(name)
        return values[0] if values else ""

    async def make_room(self) -> Room:
        return ForkRoom(self.fork.id, pycrdt.Doc(), fork=self.fork, document=self.document)

    async def receive_raw(self, payload: bytes) -> None:
        """A save request is answered ``success``: the copy is stored as it changes (in the
        database: a fork is not a file)."""
        action, request_id = read_raw_request(payload)
        if action == "save" and self.peer is not None:
            self.peer.push(create_raw_json_message(
                {"type": "save", "responseTo": request_id, "status": "success"}))

    async def fork_deleted(self, _message: dict[str, Any]) -> None:
        """The fork was deleted: close this connection."""
        await self._leave()
        await self.close(close_codes.NOT_FOUND)
