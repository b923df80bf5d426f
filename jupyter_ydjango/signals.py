"""Django signals of the rooms' lifecycle, for server-side code in the rooms' process.

Both are sent by the room registry on the rooms' event loop, with the room as ``room``
(a :class:`~jupyter_ydjango.rooms.room.Room`; a file's room is a
:class:`~jupyter_ydjango.documents.room.DocumentRoom`). Receivers run synchronously on that loop:
they must not block (schedule slow work); an exception in one is logged, and neither stops
the other receivers nor the room.

Example::

    from django.dispatch import receiver
    from jupyter_ydjango.signals import room_loaded

    @receiver(room_loaded)
    def on_room_loaded(sender, room, **kwargs):
        print("loaded", room.name)
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["room_loaded", "room_unloaded"]

#: A room was loaded (its ``on_load`` done; clients may join from now on).
room_loaded = Signal()
#: A room was unloaded (its ``on_unload`` done: what it held is saved).
room_unloaded = Signal()
