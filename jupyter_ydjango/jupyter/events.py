"""jupyter-collaboration's events, emitted through the Jupyter server's event logger.

Server extensions listen to them: jupyterlab-chat's chat manager (which jupyter-ai's router
and personas build on) learns from ``session`` events that a chat room was loaded
(``initialize``, then it takes the room's ``YChat`` through ``get_document``) or unloaded
(``clean``), and from ``awareness`` events who joined or left it. The schemas are
jupyter-collaboration's (same ids and fields), registered here unless jupyter-collaboration
registered them already.

* ``session``: ``initialize`` when a document room is loaded, ``clean`` when it is unloaded
  (embedded Django side: the rooms are in this process; see :mod:`jupyter_ydjango.signals`).
* ``awareness``: ``join`` and ``leave`` for each client connection of a room (any Django
  side: the connections go through this server).
* ``fork``: ``create`` and ``delete`` for each fork made or deleted through this server (any
  Django side: the fork API goes through it); JupyterLab's fork manager turns them into its
  ``forkAdded`` and ``forkDeleted`` signals.
"""

from __future__ import annotations

import logging
from typing import Any

#: The schema ids (jupyter-collaboration's).
SESSION_EVENTS = "https://schema.jupyter.org/jupyter_collaboration/session/v1"
AWARENESS_EVENTS = "https://schema.jupyter.org/jupyter_collaboration/awareness/v1"
FORK_EVENTS = "https://schema.jupyter.org/jupyter_collaboration/fork/v1"

#: Rooms whose awareness is not reported (as jupyter-collaboration: the global presence room).
GLOBAL_AWARENESS = "JupyterLab:globalAwareness"

SESSION_SCHEMA: dict[str, Any] = {
    "$id": SESSION_EVENTS,
    "$schema": "http://json-schema.org/draft-07/schema",
    "version": "1",
    "title": "Collaborative session events",
    "personal-data": True,
    "description": "Events emitted server-side during a collaborative session.",
    "type": "object",
    "required": ["level", "room", "path"],
    "properties": {
        "level": {"enum": ["INFO", "DEBUG", "WARNING", "ERROR", "CRITICAL"],
                  "description": "Message type."},
        "room": {"type": "string", "description": "Room ID: format, type and file ID."},
        "path": {"type": "string", "description": "File path."},
        "store": {"type": "string", "description": "The store of the document's history."},
        "action": {"enum": ["initialize", "load", "save", "overwrite", "clean"],
                   "description": "Action performed in a room."},
        "msg": {"type": "string", "description": "Event message."},
    },
}

AWARENESS_SCHEMA: dict[str, Any] = {
    "$id": AWARENESS_EVENTS,
    "$schema": "http://json-schema.org/draft-07/schema",
    "version": "1",
    "title": "Collaborative awareness events",
    "personal-data": True,
    "description": "Awareness events emitted from server-side during a collaborative session.",
    "type": "object",
    "required": ["roomid", "username", "action"],
    "properties": {
        "roomid": {"type": "string", "description": "Room ID: format, type and file ID."},
        "username": {"type": "string",
                     "description": "The name of the user who joined or left the room."},
        "action": {"enum": ["join", "leave"]},
        "msg": {"type": "string", "description": "Optional event message."},
    },
}


FORK_SCHEMA: dict[str, Any] = {
    "$id": FORK_EVENTS,
    "$schema": "http://json-schema.org/draft-07/schema",
    "version": "1",
    "title": "Collaborative fork events",
    "personal-data": True,
    "description": "Fork events emitted from server-side during a collaborative session.",
    "type": "object",
    "required": ["fork_roomid", "fork_info", "username", "action"],
    "properties": {
        "fork_roomid": {"type": "string", "description": "The fork's room ID."},
        "fork_info": {
            "type": "object",
            "description": "What the fork API says of the fork.",
            "required": ["root_roomid", "synchronize", "title", "description"],
            "properties": {
                "root_roomid": {"type": "string", "description": "The forked room's ID."},
                "synchronize": {"type": "boolean",
                                "description": "Whether the fork follows its root."},
                "title": {"type": "string", "description": "The fork's title."},
                "description": {"type": "string", "description": "The fork's description."},
            },
        },
        "username": {"type": "string",
                     "description": "The name of the user who made or deleted the fork."},
        "action": {"enum": ["create", "delete"]},
    },
}


class CollaborationEvents:
    """Emits the events of the rooms served through one Jupyter server."""

    def __init__(self, event_logger: Any, log: logging.Logger | Any) -> None:
        self.event_logger = event_logger
        self.log = log
        for schema in (SESSION_SCHEMA, AWARENESS_SCHEMA, FORK_SCHEMA):
            if schema["$id"] not in self.event_logger.schemas:
                self.event_logger.register_event_schema(schema)

    def connect_rooms(self) -> None:
        """Report the loads and unloads of this process's document rooms (embedded Django
        side)."""
        from jupyter_ydjango.signals import room_loaded, room_unloaded

        room_loaded.connect(self._on_room_loaded, weak=False, dispatch_uid=id(self))
        room_unloaded.connect(self._on_room_unloaded, weak=False, dispatch_uid=id(self))

    def disconnect_rooms(self) -> None:
        """Stop reporting rooms (the server stops)."""
        from jupyter_ydjango.signals import room_loaded, room_unloaded

        room_loaded.disconnect(dispatch_uid=id(self))
        room_unloaded.disconnect(dispatch_uid=id(self))

    def _on_room_loaded(self, sender: type, room: Any, **kwargs: Any) -> None:
        path = _document_path(room)
        if path is not None:
            self.room_loaded(room.name, path)

    def _on_room_unloaded(self, sender: type, room: Any, **kwargs: Any) -> None:
        path = _document_path(room)
        if path is not None:
            self.room_unloaded(room.name, path)

    def room_loaded(self, room_id: str, path: str) -> None:
        """A document room was loaded (``session`` ``initialize``)."""
        self._session(room_id, path, "initialize", "Room initialized")

    def room_unloaded(self, room_id: str, path: str) -> None:
        """A document room was unloaded (``session`` ``clean``)."""
        self._session(room_id, path, "clean", "Room deleted.")

    def client_joined(self, room_id: str, username: str) -> None:
        """A client connected to a room (``awareness`` ``join``)."""
        self._awareness(room_id, username, "join")

    def client_left(self, room_id: str, username: str) -> None:
        """A client's connection to a room closed (``awareness`` ``leave``)."""
        self._awareness(room_id, username, "leave")

    def fork(self, fork_roomid: str, fork_info: dict[str, Any], username: str,
             action: str) -> None:
        """A fork was made (``create``) or deleted (``delete``)."""
        self._emit(FORK_EVENTS, {"fork_roomid": fork_roomid, "fork_info": fork_info,
                                 "username": username, "action": action})

    def _session(self, room_id: str, path: str, action: str, msg: str) -> None:
        self._emit(SESSION_EVENTS, {"level": "INFO", "room": room_id, "path": path,
                                    "action": action, "msg": msg})

    def _awareness(self, room_id: str, username: str, action: str) -> None:
        if room_id != GLOBAL_AWARENESS:
            self._emit(AWARENESS_EVENTS,
                       {"roomid": room_id, "username": username, "action": action})

    def _emit(self, schema_id: str, data: dict[str, Any]) -> None:
        try:
            self.event_logger.emit(schema_id=schema_id, data=data)
        except Exception:  # a listener's or a modifier's error must not reach the rooms
            self.log.exception("jupyter_ydjango: cannot emit %s %r", schema_id, data)


def _document_path(room: Any) -> str | None:
    """The file path of a document room (``None`` for other rooms)."""
    from jupyter_ydjango.documents.room import DocumentRoom

    return room.document.path if isinstance(room, DocumentRoom) else None
