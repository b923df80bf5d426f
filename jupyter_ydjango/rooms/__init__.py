"""Rooms: one authoritative document per room per process, its peers and awareness, the relay
to the same room in other processes, and the changes a room has yet to store.

Nothing here knows of files, formats or the database."""

from jupyter_ydjango.rooms.room import (
    Peer,
    Room,
    RoomRegistry,
    close_all_rooms,
    find_room,
    get_registry,
    loaded_rooms,
)

__all__ = [
    "Peer", "Room", "RoomRegistry", "close_all_rooms", "find_room", "get_registry", "loaded_rooms",
]
