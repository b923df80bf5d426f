"""Where the store runs: database calls and file I/O off the event loop.

Everything in the store is blocking and touches no document object, only bytes and plain
values: the rooms call it through :func:`run_db` (Django's ``database_sync_to_async``) or
:func:`run_io` (a worker thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from channels.db import database_sync_to_async

T = TypeVar("T")


async def run_db(func: Callable[..., T], *args: Any) -> T:
    """Run a database function of this module off the event loop."""
    return await database_sync_to_async(func)(*args)


async def run_io(func: Callable[..., T], *args: Any) -> T:
    """Run a file-system or CPU-heavy function off the event loop."""
    return await asyncio.to_thread(func, *args)

