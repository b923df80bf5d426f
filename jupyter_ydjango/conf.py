"""The Django settings this app reads, with their defaults.

The app works in any Django project: a setting that the project does not define takes the
default below. The embedded project (:mod:`jupyter_ydjango.settings`) sets them from
``YDJANGO_*`` environment variables.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Largest websocket frame accepted from a client, in bytes; larger ones close the
    # connection with 1009. Sized for a first sync of a large notebook with outputs.
    "YDJANGO_MAX_MESSAGE_SIZE": 64 * 1024 * 1024,
    # Seconds a room stays loaded after its last connection left.
    "YDJANGO_ROOM_UNLOAD_DELAY": 60.0,
    # Seconds between relay heartbeats (cross-process gap detection, group re-join).
    "YDJANGO_RELAY_HEARTBEAT": 5.0,
    # Development only: let unauthenticated clients into rooms of the shipped application.
    "YDJANGO_ALLOW_ANONYMOUS": False,
}


def get_setting(name: str) -> Any:
    """The value of a ``YDJANGO_*`` setting, or its default."""
    return getattr(settings, name, DEFAULTS[name])
