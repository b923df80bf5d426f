"""Start-up of the embedded Django project inside the Jupyter server process."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Mapping
from typing import Any


def set_environment(values: Mapping[str, str], log: Any) -> None:
    """Export ``values`` for the Django settings module, which reads them at import time."""
    from django.conf import settings

    if settings.configured:
        log.warning("Django settings were configured before the jupyter_ydjango extension "
                    "started: its YDJANGO_* values may not take effect")
    os.environ.update(values)


def setup_django(settings_module: str) -> None:
    """Configure Django with ``settings_module`` (once per process).

    Django sets the process's ``TZ`` to ``settings.TIME_ZONE``; in the Jupyter server that
    would change the time zone of the server's logs and of every kernel started afterwards,
    so the previous ``TZ`` is put back (Django's time zone support does not depend on it).
    """
    import django
    from django.conf import settings

    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if settings.configured and _apps_ready():
        return
    tz = os.environ.get("TZ")
    try:
        django.setup()
    finally:
        if os.environ.get("TZ") != tz:
            if tz is None:
                del os.environ["TZ"]
            else:
                os.environ["TZ"] = tz
            if hasattr(time, "tzset"):
                time.tzset()


def _apps_ready() -> bool:
    from django.apps import apps

    return apps.ready


def migrate() -> None:
    """Apply the database migrations (blocking: run it in a thread)."""
    from django.core.management import call_command
    from django.db import connections

    try:
        call_command("migrate", interactive=False, verbosity=0)
    finally:
        connections.close_all()


def import_object(spec: str) -> Any:
    """The object named by ``"package.module:attribute"``."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"expected 'module:attribute', got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj
