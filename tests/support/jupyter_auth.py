"""Users and permissions of a test Jupyter server (loaded by the server process).

``--ServerApp.identity_provider_class=jupyter_auth.TokenUsers`` maps each token of
:data:`USERS` to a named user; ``--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer``
lets ``reader`` only read and ``nobody`` do nothing.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth import Authorizer, IdentityProvider, User

#: token -> user name
USERS = {"writer-token": "writer", "editor-token": "editor", "reader-token": "reader",
         "nobody-token": "nobody"}


class TokenUsers(IdentityProvider):
    """One user per token of :data:`USERS` (the server's own token still works)."""

    async def get_user_token(self, handler: Any) -> User | None:
        name = USERS.get(self.get_token(handler) or "")
        if name is None:
            return await super().get_user_token(handler)
        return User(username=name, name=name.title(), display_name=name.title())


class ReadOnlyAuthorizer(Authorizer):
    """``reader`` may only read, ``nobody`` may do nothing, everybody else everything."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if user.username == "nobody":
            return False
        if user.username == "reader":
            return action == "read"
        return True
