"""Users and permissions of a test Jupyter server (loaded by the server process).

``--ServerApp.identity_provider_class=jupyter_auth.TokenUsers`` maps each token of
:data:`USERS` to a named user; ``--ServerApp.authorizer_class=jupyter_auth.ReadOnlyAuthorizer``
lets ``reader`` only read and ``nobody`` do nothing.

Access can be taken away while the server runs: the JSON file named by the
``TEST_REVOCATIONS`` environment variable, when it exists, lists ``{"revoked": [tokens],
"readers": [user names]}``: revoked tokens log nobody in any more, and the users listed as
readers may only read.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jupyter_server.auth import Authorizer, IdentityProvider, User

#: token -> user name
USERS = {"writer-token": "writer", "editor-token": "editor", "reader-token": "reader",
         "nobody-token": "nobody"}


def revocations() -> dict[str, list[str]]:
    """What the ``TEST_REVOCATIONS`` file says now (nothing if there is none)."""
    path = os.environ.get("TEST_REVOCATIONS", "")
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError):
        return {}


class TokenUsers(IdentityProvider):
    """One user per token of :data:`USERS` (the server's own token still works)."""

    async def get_user_token(self, handler: Any) -> User | None:
        token = self.get_token(handler) or ""
        if token in revocations().get("revoked", []):
            return None
        name = USERS.get(token)
        if name is None:
            return await super().get_user_token(handler)
        return User(username=name, name=name.title(), display_name=name.title())


class ReadOnlyAuthorizer(Authorizer):
    """``reader`` may only read, ``nobody`` may do nothing, everybody else everything."""

    def is_authorized(self, handler: Any, user: User, action: str, resource: str) -> bool:
        if user.username == "nobody":
            return False
        if user.username == "reader" or user.username in revocations().get("readers", []):
            return action == "read"
        return True
