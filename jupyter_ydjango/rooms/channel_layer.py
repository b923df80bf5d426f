"""Calls to the channel layer that wait while it is briefly unreachable (Redis restarting)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from jupyter_ydjango.rooms.backoff import Backoff

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_layer(call: Callable[[], Awaitable[T]], what: str, timeout: float) -> T:
    """Run ``call`` (a channel-layer operation), retrying with a growing pause while it
    fails, for up to ``timeout`` seconds; then its last error is raised.

    ``what`` names the operation in the log.
    """
    deadline = time.monotonic() + timeout
    backoff = Backoff(first=0.05, most=1.0)
    while True:
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if time.monotonic() + backoff.delay > deadline:
                logger.error("%s: the channel layer is unreachable, giving up: %r", what, exc)
                raise
            delay = backoff.failed()
            if backoff.failures == 1:
                logger.warning("%s: the channel layer is unreachable, waiting up to %.0f s: %r",
                               what, timeout, exc)
            await asyncio.sleep(delay)
            continue
        if backoff.succeeded():
            logger.info("%s: the channel layer answers again", what)
        return result
