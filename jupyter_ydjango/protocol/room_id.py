"""The id of a document's room, as JupyterLab names it: ``{format}:{type}:{fileId}``.

It is the last part of the websocket URL ``/api/collaboration/room/{format}:{type}:{fileId}``
(``json:notebook:<uuid>``, ``text:file:<uuid>``); the file id is the document's id.
"""

from __future__ import annotations

from typing import NamedTuple


class RoomId(NamedTuple):
    """A document room's id, parsed."""

    format: str
    type: str
    file_id: str

    def __str__(self) -> str:
        return f"{self.format}:{self.type}:{self.file_id}"

    @property
    def kind(self) -> str:
        """``{format}:{type}``: the document type the room serves."""
        return f"{self.format}:{self.type}"

    @classmethod
    def parse(cls, room_id: str) -> RoomId:
        """The parts of ``room_id`` (a file id may not hold ``:``; the format and type are
        what comes before its last two)."""
        kind, _, file_id = room_id.rpartition(":")
        file_format, _, file_type = kind.partition(":")
        return cls(file_format, file_type, file_id)
