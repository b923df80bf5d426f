"""Who is connecting: the identity the Jupyter server hands to the Django side.

The Jupyter server authenticates and authorizes the user with its own machinery, then passes
an :class:`Identity` along with each proxied request:

* in-process (the embedded default), as the ASGI scope key :data:`SCOPE_KEY`: the scope is
  built by the bridge, never from the network, so it needs no signature;
* to a remote Django Channels service, as the HTTP header :data:`HEADER`: a value signed with
  the secret both sides share, that expires after ``max_age`` seconds
  (:func:`sign_identity` / :func:`verify_identity`).

Pure functions, no I/O; safe to import before Django is configured.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from django.core import signing

__all__ = [
    "HEADER",
    "SCOPE_KEY",
    "Identity",
    "IdentityError",
    "sign_identity",
    "verify_identity",
]

#: ASGI scope key holding an :class:`Identity` set by the in-process bridge.
SCOPE_KEY = "ydjango.identity"
#: HTTP header (lower case, as in ASGI scopes) carrying a signed identity.
HEADER = "x-ydjango-identity"
#: Seconds a signed identity stays valid by default.
DEFAULT_MAX_AGE = 60

_SALT = "jupyter_ydjango.identity"  # fixed: a signature must verify across versions

Permission = Literal["read", "write"]


class IdentityError(ValueError):
    """A signed identity that is malformed, forged or expired."""


@dataclass(frozen=True)
class Identity:
    """An authenticated user and what they may do with documents."""

    #: Stable user name (Jupyter's ``User.username``).
    username: str
    #: ``"write"`` to edit, ``"read"`` to join read-only.
    permission: Permission = "write"
    #: Full name, for the collaborators panel.
    name: str = ""
    #: Short display name.
    display_name: str = ""

    @property
    def can_write(self) -> bool:
        """Whether this user may change documents."""
        return self.permission == "write"

    def as_dict(self) -> dict[str, Any]:
        """The identity as a JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Identity:
        """Build an identity from :meth:`as_dict`'s output; :class:`IdentityError` if invalid."""
        if not isinstance(data, dict):
            raise IdentityError("an identity must be a JSON object")
        username = data.get("username")
        permission = data.get("permission", "write")
        if not isinstance(username, str) or not username:
            raise IdentityError("an identity needs a username")
        if permission not in ("read", "write"):
            raise IdentityError(f"unknown permission {permission!r}")
        name = data.get("name") or ""
        display_name = data.get("display_name") or ""
        if not isinstance(name, str) or not isinstance(display_name, str):
            raise IdentityError("names must be strings")
        return cls(username, permission, name, display_name)


def _signer(secret: str) -> signing.TimestampSigner:
    if not secret:
        raise IdentityError("no shared secret is configured")
    return signing.TimestampSigner(key=secret, salt=_SALT, fallback_keys=[])


def sign_identity(identity: Identity, secret: str) -> str:
    """Sign ``identity`` with the shared ``secret`` (for :data:`HEADER`)."""
    return _signer(secret).sign_object(identity.as_dict(), compress=True)


def verify_identity(token: str, secret: str, max_age: float = DEFAULT_MAX_AGE) -> Identity:
    """The identity in a signed ``token``.

    :raises IdentityError: the signature is wrong (forged, or another secret), the token is
        older than ``max_age`` seconds, or it does not hold a valid identity.
    """
    try:
        data = _signer(secret).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise IdentityError(f"expired identity: {exc}") from None
    except (signing.BadSignature, ValueError) as exc:
        raise IdentityError(f"invalid identity signature: {exc}") from None
    return Identity.from_dict(data)
