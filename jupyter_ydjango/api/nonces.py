"""The nonces of signed identity headers seen lately: each is accepted once.

A signed header (:mod:`jupyter_ydjango.api.identity`) is valid for ``YDJANGO_IDENTITY_MAX_AGE``
seconds; the nonce it carries is remembered that long (and a second more, for clock steps),
so that a header replayed within its lifetime is refused. Processes that share rooms share
Redis (``serve --workers N`` requires it), and then remember nonces there, so that a header
replayed to another worker is refused too; a single process remembers them in memory.

Where Redis cannot be asked, the header is refused (503 for the client to retry): a replay is
never let through for want of a check.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

#: Seconds a nonce is remembered beyond the lifetime of its header.
MARGIN = 1.0


class NonceUnavailable(Exception):
    """The shared store of nonces cannot be asked."""


class MemoryNonces:
    """The nonces of one process."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}  # nonce -> until when it is remembered (in order)

    async def claim(self, nonce: str, ttl: float) -> bool:
        """Remember ``nonce`` for ``ttl`` seconds: ``False`` if it is remembered already."""
        now = time.monotonic()
        while self._seen:
            oldest, until = next(iter(self._seen.items()))
            if until > now:
                break
            del self._seen[oldest]
        if nonce in self._seen:
            return False
        self._seen[nonce] = now + ttl
        return True


class RedisNonces:
    """The nonces of every process sharing one Redis (``SET NX`` with an expiry)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis = redis.asyncio.from_url(url, socket_timeout=5)

    async def claim(self, nonce: str, ttl: float) -> bool:
        try:
            return bool(await self._redis.set(f"ydjango:nonce:{nonce}", b"1", nx=True,
                                              px=max(1, int(ttl * 1000))))
        except Exception as exc:
            raise NonceUnavailable(f"cannot ask Redis about the identity's nonce: {exc!r}") \
                from exc


_stores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()


def redis_url() -> str:
    """The URL of the Redis of the channel layer, if it is channels_redis's (else ``""``)."""
    from django.conf import settings

    layer = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return ""
    hosts = layer.get("CONFIG", {}).get("hosts") or []
    if not hosts:
        return "redis://localhost:6379"
    host = hosts[0]
    if isinstance(host, dict):
        host = host.get("address", "")
    if isinstance(host, (tuple, list)):
        return f"redis://{host[0]}:{host[1]}"
    return str(host)


async def claim_nonce(nonce: str, max_age: float) -> bool:
    """Whether ``nonce`` is new (it is remembered from now on), in the store of the running
    event loop: Redis where the channel layer is on Redis, else memory.

    :raises NonceUnavailable: Redis cannot be asked.
    """
    loop = asyncio.get_running_loop()
    store = _stores.get(loop)
    if store is None:
        url = redis_url()
        store = RedisNonces(url) if url else MemoryNonces()
        _stores[loop] = store
    return await store.claim(nonce, max_age + MARGIN)
