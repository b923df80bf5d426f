"""Calls to the channel layer that wait while it is briefly unreachable (Redis restarting)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_layer(call: Callable[[], Awaitable[T]], what: str, timeout: float) -> T:
    """Run ``call`` (a channel-layer operation), retrying with a growing pause while it
    fails, for up to ``timeout`` seconds; then its last error is raised.

    ``what`` names the operation in the log.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    failures = 0
    while True:
        try:
            result = await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            if time.monotonic() + delay > deadline:
                logger.error("%s: the channel layer is unreachable, giving up: %r", what, exc)
                raise
            if failures == 1:
                logger.warning("%s: the channel layer is unreachable, waiting up to %.0f s: %r",
                               what, timeout, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        if failures:
            logger.info("%s: the channel layer answers again", what)
        return result
