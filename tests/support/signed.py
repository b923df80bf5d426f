"""Identity headers as a Jupyter server in remote mode signs them: one per request."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from jupyter_ydjango.api.identity import HEADER, Identity, sign_identity


def signed(identity: Identity, secret: str, method: str, target: str) -> dict[str, str]:
    """The header of one request of ``method`` (``GET`` for a websocket) to ``target`` (a URL,
    or a path relative to the service's root), signed with ``secret``."""
    path = unquote(urlsplit(target).path)
    return {HEADER: sign_identity(identity, secret, method=method,
                                  path=path if path.startswith("/") else f"/{path}")}
