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
        "connection with 4413. Clients do send large frames: JupyterLab's frontend writes "
        "the outputs a kernel sends it into the document (a plot of tens of MB comes as one "
        "client update), and a client that edited offline sends its changes in one sync "
        "step 2. A frame is handled one message at a time, so it costs its size once.",
    ),
    "YDJANGO_MAX_MESSAGES_PER_FRAME": (
        64, "Messages a client's frame may hold (y-websocket sends one per frame); a frame with "
        "more closes the connection with 4429 before any of it is handled."),
    "YDJANGO_SEND_BUDGET": (
        32 * 1024 * 1024, "Bytes that may wait to be sent to one client; a client that does "
        "not read and falls further behind is disconnected with 4503 (y-websocket reconnects "
        "and resyncs). One frame larger than this (a joiner's whole document) still goes to a "
        "client that is not behind."),
    "YDJANGO_HTTP_RATE": (
        100.0, "HTTP API requests a second one user may make to one process, after a burst of "
        "YDJANGO_HTTP_BURST; past it they are answered 429 with Retry-After. 0: no limit."),
    "YDJANGO_HTTP_BURST": (500, "HTTP API requests one user may make at once (see "
                           "YDJANGO_HTTP_RATE)."),
    "YDJANGO_MAX_FILE_SIZE": (
        256 * 1024 * 1024, "Largest file a room opens, in bytes: a larger one is refused "
        "before it is read (the session request with 413, the room's websocket with 4413). "
        "0: no limit."),
    "YDJANGO_MAX_AWARENESS_STATE": (
        256 * 1024, "Largest awareness state (a client's user, cursors and selections, as "
        "JSON) in bytes; a larger one closes its connection with 4413."),
    "YDJANGO_MAX_AWARENESS_CLIENTS": (
        8, "Awareness client ids one connection may announce (a Yjs client has one); more "
        "close the connection with 4429."),
    "YDJANGO_ROOM_UNLOAD_DELAY": (60.0, "Seconds a room stays loaded after its last connection "
                                  "left."),
    "YDJANGO_RELAY_HEARTBEAT": (5.0, "Seconds between relay heartbeats (cross-process gap "
                                "detection, group re-join). A process silent for two "
                                "heartbeats is taken for gone: its clients' cursors are "
                                "removed and the changes it did not confirm storing are "
                                "stored by the others."),
    "YDJANGO_CHANNEL_LAYER_WAIT": (10.0, "Seconds a new connection waits for an unreachable "
                                   "channel layer (Redis restarting) before it is refused."),
    "YDJANGO_ALLOW_ANONYMOUS": (False, "Development only: let unauthenticated clients into "
                                "rooms."),
    "YDJANGO_ALLOW_HIDDEN": (False, "Serve hidden files (a name on the path starts with "
                             "'.'), as Jupyter's ContentsManager.allow_hidden; embedded, the "
                             "Jupyter server's setting."),
    "YDJANGO_CONTENTS_MANAGER_CLASS": (
        "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager",
        "The Jupyter contents manager rooms read and write files through (a dotted path: "
        "jupytext.AsyncTextFileContentsManager, a hybrid or S3 manager...); embedded, the "
        "Jupyter server's own is used instead. Jupyter's file managers without save hooks "
        "take a faster path of the same behaviour.",
    ),
    "YDJANGO_CONTENTS_MANAGER_OPTIONS": (
        {}, "The traits the contents manager is made with, as a JSON object (root_dir is "
        "YDJANGO_NOTEBOOK_DIR and allow_hidden YDJANGO_ALLOW_HIDDEN unless given)."),
    "YDJANGO_NOTEBOOK_DIR": (None, "The directory whose files are served (API paths are "
                             "relative to it); unset: the working directory."),
    "YDJANGO_SAVE_DELAY": (1.0, "Seconds without changes before a document is saved to its "
                           "file."),
    "YDJANGO_SAVE_MAX_WAIT": (10.0, "Seconds a document with changes may go unsaved while "
                              "edits keep coming."),
    "YDJANGO_FILE_POLL_INTERVAL": (1.0, "Seconds between checks of a loaded document's file "
                                   "for changes made by others."),
    "YDJANGO_COMPACT_AFTER": (500, "Update-log rows of a document folded into snapshots once "
                              "this many accumulate."),
    "YDJANGO_COMPACT_IDLE": (30.0, "Seconds without changes after which a document's log is "
                             "folded into snapshots."),
    "YDJANGO_HISTORY_BURST_GAP": (5.0, "Seconds without changes that end a burst of edits: "
                                  "each burst is one point of the document's timeline (and "
                                  "one snapshot once the log is folded)."),
    "YDJANGO_HISTORY_KEEP_DAYS": (365.0, "Days a point of a document's timeline is kept; "
                                  "older ones are rolled into one base point, the document "
                                  "as it was then. 0: every point is kept (thinned with age)."),
    "YDJANGO_DELETED_KEEP_DAYS": (90.0, "Days the history of a document whose file was "
                                  "deleted is kept (to restore it); then it is deleted. 0: "
                                  "kept forever."),
    "YDJANGO_CONVERSION_PROCESSES": (1, "Worker processes that turn big files into documents "
                                     "(first opens) and documents into files (saves), kept "
                                     "running, so that this work and the memory it leaves "
                                     "behind stay out of the server; 0: threads of the server "
                                     "instead."),
    "YDJANGO_IDENTITY_SECRET": ("", "Secret shared with Jupyter servers that sign the "
                                "identity header (remote mode): at least 32 bytes, not an "
                                "example's (the service refuses to start otherwise); empty: "
                                "no header is accepted."),
    "YDJANGO_IDENTITY_MAX_AGE": (10.0, "Seconds a signed identity stays valid (each is "
                                 "signed for one request, whose nonce is accepted once)."),
}

#: The default of every setting.
DEFAULTS: dict[str, Any] = {name: default for name, (default, _) in SETTINGS.items()}

#: Environment variables that only the embedded settings (:mod:`jupyter_ydjango.settings`)
#: read, beside one for each setting above: the default, as text, and what it does.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "YDJANGO_DATABASE_URL": (
        "SQLite in YDJANGO_DATA_DIR",
        "The database, as a URL that dj-database-url understands (postgres://user:password@"
        "host:5432/name, sqlite:///path).",
    ),
    "YDJANGO_REDIS_URL": (
        "none: the in-memory channel layer",
        "redis://host:6379/0: use the channels_redis layer, so that several processes share "
        "rooms (required by serve --workers N with N > 1).",
    ),
    "YDJANGO_REDIS_CAPACITY": ("1000", "Messages a channel of the Redis layer holds before "
                               "the layer drops them."),
    "YDJANGO_SECRET_KEY": (
        "generated once, kept in YDJANGO_DATA_DIR",
        "Django's SECRET_KEY. Processes that share rooms and sessions need the same key.",
    ),
    "YDJANGO_DATA_DIR": ("<jupyter data dir>/ydjango", "Where the default SQLite database and "
                         "the generated secret key live."),
    "YDJANGO_ALLOWED_HOSTS": ("localhost,127.0.0.1,[::1]", "Django's ALLOWED_HOSTS, comma-"
                              "separated: the host names the service answers to."),
    "YDJANGO_DEBUG": ("off", "1: Django's DEBUG (never in production)."),
    "YDJANGO_LOG_LEVEL": ("INFO", "Level of the jupyter_ydjango loggers."),
    "YDJANGO_LOG_FORMAT": ("plain text", "json: one JSON object per line, with the worker "
                           "number, for log collectors."),
    "YDJANGO_WORKER": ("0", "Set by serve --workers for each worker process (its number, in "
                       "logs and metrics); not to be set by hand."),
}


def get_setting(name: str) -> Any:
    """The value of a ``YDJANGO_*`` setting, or its default."""
    return getattr(settings, name, DEFAULTS[name])


def notebook_root() -> Path:
    """The directory whose files are served (``YDJANGO_NOTEBOOK_DIR``), resolved."""
    return Path(get_setting("YDJANGO_NOTEBOOK_DIR") or os.getcwd()).resolve()
