"""The Django settings this app reads, with their defaults.

The app works in any Django project: a setting that the project does not define takes the
default below. The embedded project (:mod:`jupyter_ydjango.settings`) sets them from
``YDJANGO_*`` environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

#: Every setting of the app: its default and what it does.
SETTINGS: dict[str, tuple[Any, str]] = {
    "YDJANGO_MAX_MESSAGE_SIZE": (
        64 * 1024 * 1024,
        "Largest websocket frame accepted from a client, in bytes; a larger one closes the "
        "connection with 4413. Sized for a first sync of a large notebook with outputs.",
    ),
    "YDJANGO_ROOM_UNLOAD_DELAY": (60.0, "Seconds a room stays loaded after its last connection "
                                  "left."),
    "YDJANGO_RELAY_HEARTBEAT": (5.0, "Seconds between relay heartbeats (cross-process gap "
                                "detection, group re-join)."),
    "YDJANGO_ALLOW_ANONYMOUS": (False, "Development only: let unauthenticated clients into "
                                "rooms."),
    "YDJANGO_NOTEBOOK_DIR": (None, "The directory whose files are served (API paths are "
                             "relative to it); unset: the working directory."),
    "YDJANGO_SAVE_DELAY": (1.0, "Seconds without changes before a document is saved to its "
                           "file."),
    "YDJANGO_SAVE_MAX_WAIT": (10.0, "Seconds a document with changes may go unsaved while "
                              "edits keep coming."),
    "YDJANGO_FILE_POLL_INTERVAL": (1.0, "Seconds between checks of a loaded document's file "
                                   "for changes made by others."),
    "YDJANGO_COMPACT_AFTER": (500, "Update-log rows of a document folded into a snapshot once "
                              "this many accumulate."),
    "YDJANGO_COMPACT_IDLE": (30.0, "Seconds without changes after which a document's log is "
                             "folded into a snapshot."),
    "YDJANGO_IDENTITY_SECRET": ("", "Secret shared with Jupyter servers that sign the "
                                "identity header (remote mode); empty: no header is "
                                "accepted."),
    "YDJANGO_IDENTITY_MAX_AGE": (60.0, "Seconds a signed identity stays valid."),
}

#: The default of every setting.
DEFAULTS: dict[str, Any] = {name: default for name, (default, _) in SETTINGS.items()}


def get_setting(name: str) -> Any:
    """The value of a ``YDJANGO_*`` setting, or its default."""
    return getattr(settings, name, DEFAULTS[name])


def notebook_root() -> Path:
    """The directory whose files are served (``YDJANGO_NOTEBOOK_DIR``), resolved."""
    return Path(get_setting("YDJANGO_NOTEBOOK_DIR") or os.getcwd()).resolve()
