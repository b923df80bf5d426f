"""ASGI middleware that puts the connecting user's :class:`~.identity.Identity` in the scope.

Where the identity comes from, first match wins:

1. the in-process bridge of the Jupyter server already set ``scope[SCOPE_KEY]`` (scopes are
   built in-process, a network client cannot set them);
2. a signed :data:`~.identity.HEADER` from a Jupyter server, verified with
   ``YDJANGO_IDENTITY_SECRET`` (a forged, expired, replayed or unexpected header, or one
   signed for another request, is refused: the scope gets no identity and
   ``scope["ydjango.identity_error"]`` says why);
3. a user logged in to Django (``scope["user"]``, from Channels' ``AuthMiddlewareStack``),
   who may write;
4. with ``YDJANGO_ALLOW_ANONYMOUS`` (development only), an anonymous writer.

Otherwise the scope's identity is ``None`` and consumers and views refuse the client.
"""

from __future__ import annotations

from typing import Any

from jupyter_ydjango.api.identity import (
    HEADER,
    SCOPE_KEY,
    Identity,
    IdentityError,
    secret_problem,
    verify_identity,
)
from jupyter_ydjango.api.nonces import NonceUnavailable, claim_nonce
from jupyter_ydjango.conf import get_setting

#: Scope key with the reason a signed identity was refused.
ERROR_KEY = "ydjango.identity_error"
#: The reason of a scope that brings no identity at all (a Django login may still apply).
NOT_AUTHENTICATED = "not authenticated"


async def identity_from_scope(scope: dict[str, Any]) -> tuple[Identity | None, str]:
    """The identity of a scope (see the module docstring) and, when none, why."""
    given = scope.get(SCOPE_KEY)
    if isinstance(given, Identity):
        return given, ""
    headers = dict(scope.get("headers") or ())
    token = headers.get(HEADER.encode())
    if token is not None:
        secret = get_setting("YDJANGO_IDENTITY_SECRET")
        if not secret:
            return None, "an identity header was sent but YDJANGO_IDENTITY_SECRET is not set"
        if secret_problem(secret):
            return None, f"YDJANGO_IDENTITY_SECRET is refused: {secret_problem(secret)}"
        max_age = get_setting("YDJANGO_IDENTITY_MAX_AGE")
        method = "GET" if scope["type"] == "websocket" else scope.get("method", "GET")
        try:
            signed = verify_identity(token.decode("latin-1"), secret, method=method,
                                     path=scope.get("path", ""), max_age=max_age)
        except IdentityError as exc:
            return None, str(exc)
        try:
            if not await claim_nonce(signed.nonce, max_age):
                return None, "replayed identity: its nonce was seen already"
        except NonceUnavailable as exc:
            return None, str(exc)
        return signed.identity, ""
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        name = user.get_full_name() if hasattr(user, "get_full_name") else ""
        return Identity(user.get_username(), "write", name, name), ""
    if get_setting("YDJANGO_ALLOW_ANONYMOUS"):
        return Identity("anonymous", "write", "Anonymous", "Anonymous"), ""
    return None, NOT_AUTHENTICATED


def scope_decides(scope: dict[str, Any]) -> bool:
    """Whether the scope settles the client's identity by itself: it brings one (the bridge,
    a signed header, anonymous development mode) or refused a signed header. Otherwise a
    login to Django may still identify the client."""
    return (scope.get(SCOPE_KEY) is not None
            or scope.get(ERROR_KEY, NOT_AUTHENTICATED) != NOT_AUTHENTICATED)


class IdentityMiddleware:
    """Sets ``scope[SCOPE_KEY]`` to the client's identity, or ``None``."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] in ("http", "websocket"):
            identity, error = await identity_from_scope(scope)
            scope = dict(scope)
            scope[SCOPE_KEY] = identity
            scope[ERROR_KEY] = error
        return await self.app(scope, receive, send)


class DjangoLoginFallback:
    """Channels' ``AuthMiddlewareStack`` in front of ``app``, run only for clients that bring
    no identity of their own.

    The login lookup costs every websocket a trip to the database thread; a client of the
    in-process bridge (identity in the scope) or with a signed identity header does not need
    it. Others (a browser logged in to Django) get ``scope["user"]`` as before.
    """

    def __init__(self, app: Any) -> None:
        from channels.auth import AuthMiddlewareStack

        self.app = app
        self.with_login = AuthMiddlewareStack(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if isinstance(scope.get(SCOPE_KEY), Identity) or HEADER.encode() in dict(
                scope.get("headers") or ()):
            return await self.app(scope, receive, send)
        return await self.with_login(scope, receive, send)
