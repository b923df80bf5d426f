"""Settings of the embedded Django project, overridable by ``YDJANGO_*`` environment variables.

* ``YDJANGO_DATABASE_URL``: database URL (``sqlite:///path``, ``postgres://…``); default a
  SQLite file in ``YDJANGO_DATA_DIR``.
* ``YDJANGO_REDIS_URL``: use the ``channels_redis`` layer on this Redis (``redis://…``);
  default the in-memory layer (one process).
* ``YDJANGO_SECRET_KEY``: Django's secret key; default one generated once and kept in
  ``YDJANGO_DATA_DIR``. Processes that share rooms need the same key.
* ``YDJANGO_NOTEBOOK_DIR``: the root of the notebooks served; default the working directory.
* ``YDJANGO_ALLOW_ANONYMOUS=1``: development only; lets unauthenticated clients into rooms.
* ``YDJANGO_ALLOW_HIDDEN=1``: serve hidden files (Jupyter's ``ContentsManager.allow_hidden``).
* ``YDJANGO_CONTENTS_MANAGER_CLASS``: the Jupyter contents manager files are read and written
  through (dotted path); ``YDJANGO_CONTENTS_MANAGER_OPTIONS``: its traits, as a JSON object.
* ``YDJANGO_DATA_DIR``: where the default database and secret live; default
  ``<jupyter data dir>/ydjango``.
* ``YDJANGO_ALLOWED_HOSTS``: comma-separated; default ``localhost,127.0.0.1,[::1]``.
* ``YDJANGO_IDENTITY_SECRET``: the secret Jupyter servers sign the identity header with
  (remote mode); default none, and no header is accepted.
* ``YDJANGO_MAX_MESSAGE_SIZE``, ``YDJANGO_MAX_MESSAGES_PER_FRAME``, ``YDJANGO_SEND_BUDGET``,
  ``YDJANGO_MAX_AWARENESS_STATE``, ``YDJANGO_MAX_AWARENESS_CLIENTS``,
  ``YDJANGO_MAX_FILE_SIZE``, ``YDJANGO_HTTP_RATE``, ``YDJANGO_HTTP_BURST``,
  ``YDJANGO_ROOM_UNLOAD_DELAY``, ``YDJANGO_RELAY_HEARTBEAT``,
  ``YDJANGO_CHANNEL_LAYER_WAIT``, ``YDJANGO_SAVE_DELAY``, ``YDJANGO_SAVE_MAX_WAIT``,
  ``YDJANGO_FILE_POLL_INTERVAL``, ``YDJANGO_COMPACT_AFTER``, ``YDJANGO_COMPACT_IDLE``,
  ``YDJANGO_HISTORY_BURST_GAP``, ``YDJANGO_CONVERSION_PROCESSES``,
  ``YDJANGO_IDENTITY_MAX_AGE``: see
  :mod:`jupyter_ydjango.conf`.
* ``YDJANGO_DEBUG=1``: Django's ``DEBUG``.
* ``YDJANGO_LOG_LEVEL`` (``INFO``) and ``YDJANGO_LOG_FORMAT`` (``json`` for one JSON object per
  line, with the worker number; default plain text).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.management.utils import get_random_secret_key
from jupyter_core.paths import jupyter_data_dir

from jupyter_ydjango.conf import DEFAULTS


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _setting(name: str, cast: Callable[[Any], Any]) -> Any:
    """A numeric ``YDJANGO_*`` setting from the environment, else its default."""
    return cast(os.environ.get(name, DEFAULTS[name]))


def _secret_key(data_dir: Path) -> str:
    key = os.environ.get("YDJANGO_SECRET_KEY")
    if key:
        return key
    path = data_dir / "secret_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(get_random_secret_key())
    return path.read_text().strip()


DATA_DIR = Path(os.environ.get("YDJANGO_DATA_DIR") or Path(jupyter_data_dir()) / "ydjango")
DATA_DIR.mkdir(parents=True, exist_ok=True)

SECRET_KEY = _secret_key(DATA_DIR)
DEBUG = _flag("YDJANGO_DEBUG")
ALLOWED_HOSTS = [
    h.strip()
    for h in os.environ.get("YDJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",")
    if h.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "channels",
    "jupyter_ydjango",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# the API answers a failed CSRF check in JSON, as its other errors (jupyter_ydjango.api.csrf)
CSRF_FAILURE_VIEW = "jupyter_ydjango.api.csrf.csrf_failure"

ROOT_URLCONF = "jupyter_ydjango.project.urls"
ASGI_APPLICATION = "jupyter_ydjango.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("YDJANGO_DATABASE_URL") or f"sqlite:///{DATA_DIR / 'ydjango.sqlite3'}",
        conn_max_age=600,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A transaction that reads, then writes (a rename, a writer's lease) must not begin
    # DEFERRED: if another connection is writing meanwhile, SQLite cannot upgrade its read
    # lock and fails at once with "database is locked". IMMEDIATE ones wait their turn.
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_redis_url = os.environ.get("YDJANGO_REDIS_URL")
if _redis_url:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 reads with a 5 s socket timeout by default, which aborts the
                # layer's blocking 5 s BZPOPMIN and crashes idle consumers: allow longer.
                "hosts": [{"address": _redis_url, "socket_timeout": 30}],
                "capacity": int(os.environ.get("YDJANGO_REDIS_CAPACITY", "1000")),
            },
        },
        # The relay between processes: Redis pub/sub delivers a message with one PUBLISH,
        # where the layer above needs four round trips to send and four more to receive,
        # one message at a time per process. The relay repairs what pub/sub may lose.
        "ydjango-relay": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": _redis_url, "socket_timeout": 30}]},
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

USE_TZ = True
# UTC: Django exports TIME_ZONE as the process's TZ, which would reach kernels and logs.
TIME_ZONE = "UTC"
STATIC_URL = "static/"

YDJANGO_NOTEBOOK_DIR = os.environ.get("YDJANGO_NOTEBOOK_DIR") or os.getcwd()
YDJANGO_ALLOW_ANONYMOUS = _flag("YDJANGO_ALLOW_ANONYMOUS")
YDJANGO_ALLOW_HIDDEN = _flag("YDJANGO_ALLOW_HIDDEN")
YDJANGO_CONTENTS_MANAGER_CLASS = (os.environ.get("YDJANGO_CONTENTS_MANAGER_CLASS")
                                  or DEFAULTS["YDJANGO_CONTENTS_MANAGER_CLASS"])
YDJANGO_CONTENTS_MANAGER_OPTIONS = os.environ.get("YDJANGO_CONTENTS_MANAGER_OPTIONS") or "{}"
YDJANGO_MAX_MESSAGE_SIZE = _setting("YDJANGO_MAX_MESSAGE_SIZE", int)
YDJANGO_MAX_MESSAGES_PER_FRAME = _setting("YDJANGO_MAX_MESSAGES_PER_FRAME", int)
YDJANGO_SEND_BUDGET = _setting("YDJANGO_SEND_BUDGET", int)
YDJANGO_MAX_AWARENESS_STATE = _setting("YDJANGO_MAX_AWARENESS_STATE", int)
YDJANGO_MAX_AWARENESS_CLIENTS = _setting("YDJANGO_MAX_AWARENESS_CLIENTS", int)
YDJANGO_MAX_FILE_SIZE = _setting("YDJANGO_MAX_FILE_SIZE", int)
YDJANGO_HTTP_RATE = _setting("YDJANGO_HTTP_RATE", float)
YDJANGO_HTTP_BURST = _setting("YDJANGO_HTTP_BURST", int)
YDJANGO_ROOM_UNLOAD_DELAY = _setting("YDJANGO_ROOM_UNLOAD_DELAY", float)
YDJANGO_RELAY_HEARTBEAT = _setting("YDJANGO_RELAY_HEARTBEAT", float)
YDJANGO_CHANNEL_LAYER_WAIT = _setting("YDJANGO_CHANNEL_LAYER_WAIT", float)
YDJANGO_SAVE_DELAY = _setting("YDJANGO_SAVE_DELAY", float)
YDJANGO_SAVE_MAX_WAIT = _setting("YDJANGO_SAVE_MAX_WAIT", float)
YDJANGO_FILE_POLL_INTERVAL = _setting("YDJANGO_FILE_POLL_INTERVAL", float)
YDJANGO_COMPACT_AFTER = _setting("YDJANGO_COMPACT_AFTER", int)
YDJANGO_HISTORY_KEEP_DAYS = _setting("YDJANGO_HISTORY_KEEP_DAYS", float)
YDJANGO_DELETED_KEEP_DAYS = _setting("YDJANGO_DELETED_KEEP_DAYS", float)
YDJANGO_COMPACT_IDLE = _setting("YDJANGO_COMPACT_IDLE", float)
YDJANGO_HISTORY_BURST_GAP = _setting("YDJANGO_HISTORY_BURST_GAP", float)
YDJANGO_CONVERSION_PROCESSES = _setting("YDJANGO_CONVERSION_PROCESSES", int)
YDJANGO_IDENTITY_SECRET = os.environ.get("YDJANGO_IDENTITY_SECRET", "")
YDJANGO_IDENTITY_MAX_AGE = _setting("YDJANGO_IDENTITY_MAX_AGE", float)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        # one JSON object per line, for log collectors (YDJANGO_LOG_FORMAT=json)
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "static_fields": {"worker": os.environ.get("YDJANGO_WORKER", "0")},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if os.environ.get("YDJANGO_LOG_FORMAT") == "json" else "plain",
        }
    },
    "loggers": {
        "jupyter_ydjango": {
            "handlers": ["console"],
            "level": os.environ.get("YDJANGO_LOG_LEVEL", "INFO"),
            "propagate": False,  # daphne configures the root logger too
        }
    },
}
