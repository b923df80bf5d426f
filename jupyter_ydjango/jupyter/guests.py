"""Guests of role links: whoever opens a link gets its role there, and nothing else.

Enabled with
``--ServerApp.identity_provider_class=jupyter_ydjango.jupyter.guests.GuestIdentityProvider``
beside the roles authorizer (:mod:`jupyter_ydjango.jupyter.authorizer`). Jupyter's own token
and password login work as before (their users own the server); in addition,
``{base}ydjango/join/{token}`` (:class:`JoinHandler`) opens a role link made by the owner
(``/api/ydjango/links``, :mod:`jupyter_ydjango.api.links`): its visitor becomes a named
guest ("Guest 3f2a"), remembered by a signed cookie of this server, and member of the link's
group, which holds the link's role. A guest who opens several links keeps one name and every
link's group. No token of the server is in a link, and a guest never learns one.

A revoked or expired link gives nothing any more: its grant is gone, so its guests are refused
everywhere, and their open connections are closed when it is revoked.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import quote

from jupyter_server.auth import User
from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import PasswordIdentityProvider
from jupyter_server.base.handlers import JupyterHandler
from tornado import web

from jupyter_ydjango.api.identity import Identity

#: The signed cookie that names a guest: ``{"name", "groups", "expires"}``.
GUEST_COOKIE = "ydjango-guest"


class GuestUser(User):
    """A visitor who opened a role link: a user of this server with the links' groups only."""

    def __init__(self, username: str, groups: tuple[str, ...]) -> None:
        label = f"Guest {username.removeprefix('guest-')}"
        super().__init__(username=username, name=label, display_name=label,
                         initials="G" + username.removeprefix("guest-")[:1].upper())
        self.ydjango_groups = groups


def guest_of(handler: web.RequestHandler) -> GuestUser | None:
    """The guest the request's cookie names, while one of its links may still hold."""
    raw = handler.get_signed_cookie(GUEST_COOKIE, max_age_days=366)
    if not raw:
        return None
    try:
        value = json.loads(raw)
        name, groups, expires = str(value["name"]), value["groups"], float(value["expires"])
    except (ValueError, KeyError, TypeError):
        return None
    if expires < time.time() or not name.startswith("guest-") or not isinstance(groups, list):
        return None
    return GuestUser(name, tuple(str(group) for group in groups))


class GuestIdentityProvider(PasswordIdentityProvider):
    """Jupyter's token and password login, and the guests of role links."""

    async def get_user(self, handler: web.RequestHandler) -> User | None:  # type: ignore[override]
        user = await super().get_user(handler)  # the owner's login comes first
        return user if user is not None else guest_of(handler)


class JoinHandler(JupyterHandler):
    """``{base}ydjango/join/{token}``: open a role link, then its notebook or folder."""

    def initialize(self, extension: Any) -> None:
        self.extension = extension

    @allow_unauthenticated  # (a link is for those who have no login here)
    async def get(self, token: str) -> None:
        guest = guest_of(self)
        identity = Identity(username=guest.username if guest else "guest", permission="read",
                            roles=True)
        backend = await self.extension.get_backend()
        response = await backend.request(
            "POST", "/api/ydjango/join", identity=identity,
            body=json.dumps({"token": token}).encode(), content_type="application/json")
        if response.status != 200:
            try:
                why = json.loads(response.body).get("error", "")
            except ValueError:
                why = ""
            raise web.HTTPError(response.status if response.status in (404, 410) else 502,
                                why or "this link cannot be opened")
        link = json.loads(response.body)
        name = guest.username if guest else f"guest-{secrets.token_hex(2)}"
        groups = sorted({*(guest.ydjango_groups if guest else ()), link["group"]})
        expires = time.time() + 366 * 86400
        self.set_signed_cookie(GUEST_COOKIE, json.dumps(
            {"name": name, "groups": groups, "expires": expires}),
            expires_days=366, httponly=True, samesite="Lax")
        tree = quote(link["path"])
        self.redirect(f"{self.base_url}lab/tree/{tree}")
