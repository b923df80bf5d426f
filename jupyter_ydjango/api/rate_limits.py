"""Requests per user on the HTTP API: what one user may make a process do.

Every API request costs something in proportion to a document (a session request may load
a room, a timeline reads the document's history), so each user has a token bucket per
process: ``YDJANGO_HTTP_BURST`` requests at once, then ``YDJANGO_HTTP_RATE`` a second.
Past it a request is answered 429, with ``Retry-After``, before anything of it runs. The
user is the identity the scope brings (the bridge's, a signed header's), else the Django
session the request's cookie names, else the client's address.

The defaults leave everything a person does in JupyterLab far below the limit (opening a
notebook makes two requests, its status bar one every few seconds) and stop a script in a
loop within a second.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any

from django.conf import settings

from jupyter_ydjango import metrics
from jupyter_ydjango.api.identity import SCOPE_KEY, Identity
from jupyter_ydjango.conf import get_setting

__all__ = ["RateLimitMiddleware", "RateLimits", "requester"]

#: Buckets kept before the full ones are forgotten (a full bucket is a fresh one).
MAX_BUCKETS = 10_000


class RateLimits:
    """Token buckets by key: ``burst`` requests at once, then ``rate`` a second."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when counted)

    def take(self, key: str) -> float:
        """Take one request of ``key``'s bucket: ``0`` if it may run, else the seconds until
        it may."""
        now = self._clock()
        tokens, counted = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - counted) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._forget_full(now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        for key, (tokens, counted) in list(self._buckets.items()):
            if tokens + (now - counted) * self.rate >= self.burst:
                del self._buckets[key]


def requester(scope: dict[str, Any]) -> str:
    """Whom a request's bucket is for (see the module)."""
    identity = scope.get(SCOPE_KEY)
    if isinstance(identity, Identity):
        return f"user:{identity.username}"
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            try:
                cookie = SimpleCookie(value.decode("latin-1"))
            except CookieError:
                continue
            session = cookie.get(settings.SESSION_COOKIE_NAME)
            if session is not None and session.value:
                return f"session:{session.value}"
    client = scope.get("client") or ("", 0)
    return f"address:{client[0]}"


class RateLimitMiddleware:
    """ASGI middleware answering 429 to a user over their rate (see the module); behind
    :class:`~jupyter_ydjango.api.middleware.IdentityMiddleware`, which sets the identity.
    A rate of 0 turns it off."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._limits: RateLimits | None = None

    @property
    def limits(self) -> RateLimits | None:
        rate = float(get_setting("YDJANGO_HTTP_RATE") or 0)
        burst = int(get_setting("YDJANGO_HTTP_BURST") or 0)
        if rate <= 0 or burst <= 0:
            return None
        if self._limits is None or (self._limits.rate, self._limits.burst) != (rate, burst):
            self._limits = RateLimits(rate, burst)
        return self._limits

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        limits = self.limits if scope["type"] == "http" else None
        wait = 0.0 if limits is None else limits.take(requester(scope))
        if not wait:
            return await self.app(scope, receive, send)
        metrics.RATE_LIMITED.inc()
        body = json.dumps({"error": f"too many requests: try again in {wait:.1f} s"}).encode()
        await send({"type": "http.response.start", "status": 429, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(max(1, math.ceil(wait))).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})
        return None
