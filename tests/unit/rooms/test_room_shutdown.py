"""Rooms unloaded at shutdown save, whatever the context the shutdown started in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pycrdt
from asgiref.sync import SyncToAsync
from django.core.management import call_command

from jupyter_ydjango.documents.room import DocumentRoom
from jupyter_ydjango.formats.builtin import FORMATS
from jupyter_ydjango.rooms.room import RoomRegistry
from jupyter_ydjango.store import records


async def test_shutdown_saves_from_a_context_caught_in_a_database_call(tmp_path: Path) -> None:
    """A stop signal's callback runs in the context current when the signal arrived: if that
    was inside a database call, asgiref refuses every later call of that context."""
    await asyncio.to_thread(call_command, "migrate", interactive=False, verbosity=0)
    path = tmp_path / "last.txt"
    path.write_text("hello")
    info, _ = await asyncio.to_thread(records.get_or_create_document,
                                      f"{tmp_path.name}/last.txt", "text", "file")
    text = FORMATS[("text", "file")]

    async def make() -> DocumentRoom:
        room = DocumentRoom(info.room_name, pycrdt.Doc(), document=info, format=text,
                            root=tmp_path.parent)
        room.save_delay = room.save_max_wait = 600.0  # saved only when unloaded
        return room

    registry = RoomRegistry(unload_delay=600)
    room = await registry.acquire(info.room_name, make)
    text.replace(room.doc, "hello world")
    assert room.unsaved

    async def shutdown() -> None:
        SyncToAsync.deadlock_context.set(True)  # as in the middle of a database call
        await registry.close()

    await asyncio.create_task(shutdown())
    assert path.read_text() == "hello world"
