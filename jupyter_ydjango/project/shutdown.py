"""A process's last act, in ``serve`` and in the Jupyter server alike: every room unloaded
(its log written, its file saved), then the conversion workers stopped."""

from __future__ import annotations

import asyncio
import logging

from jupyter_ydjango.formats.conversions import get_converter
from jupyter_ydjango.rooms.room import close_all_rooms

logger = logging.getLogger(__name__)


async def unload_everything(timeout: float = 60.0) -> None:
    """Unload the rooms of the running event loop, waiting up to ``timeout`` seconds for them
    (their ``on_unload`` hooks write what is pending), then stop the conversion workers.
    Failures are logged: the process exits anyway."""
    try:
        await asyncio.wait_for(close_all_rooms(), timeout)
    except asyncio.TimeoutError:
        logger.error("rooms did not unload within %.0f s", timeout)
    except Exception:
        logger.exception("error while unloading rooms")
    get_converter().shutdown()
