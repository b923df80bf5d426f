"""Who is connecting: the identity the Jupyter server hands to the Django side.

The Jupyter server authenticates and authorizes the user with its own machinery, then passes
an :class:`Identity` along with each proxied request:

* in-process (the embedded default), as the ASGI scope key :data:`SCOPE_KEY`: the scope is
  built by the bridge, never from the network, so it needs no signature;
* to a remote Django Channels service, as the HTTP header :data:`HEADER`: a value signed with
  the secret both sides share, bound to the request's method and path, carrying a nonce,
  and expiring after ``max_age`` seconds (:func:`sign_identity` / :func:`verify_identity`;
  the service refuses a nonce it has seen: see :mod:`jupyter_ydjango.api.nonces`). A header
  captured on its way is good for nothing but the one request it was made for.

Pure functions, no I/O; safe to import before Django is configured.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

from django.core import signing

__all__ = [
    "HEADER",
    "SCOPE_KEY",
    "Identity",
    "IdentityError",
    "SignedRequest",
    "secret_problem",
    "sign_identity",
    "verify_identity",
]

#: ASGI scope key holding an :class:`Identity` set by the in-process bridge.
SCOPE_KEY = "ydjango.identity"
#: HTTP header (lower case, as in ASGI scopes) carrying a signed identity.
HEADER = "x-ydjango-identity"
#: Seconds a signed identity stays valid by default: time for one request to reach the
#: service, and for the two machines' clocks to differ a little.
DEFAULT_MAX_AGE = 10
#: The shortest shared secret accepted, in bytes (as long as a SHA-256 key).
MIN_SECRET_BYTES = 32
#: Secrets of examples and tutorials, refused whatever their length.
EXAMPLE_SECRETS = frozenset({
    "change-me", "changeme", "secret", "a-long-random-secret", "your-secret-here",
    "replace-me-with-a-long-random-secret", "insecure", "password",
})

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
    #: Initials, for avatars (Jupyter's ``User.initials``; ``""``: the frontend's).
    initials: str = ""
    #: Colour of the user's cursor and avatar, a CSS colour (``""``: the frontend's).
    color: str = ""
    #: Whether the user's rights on each document come from the grants
    #: (:mod:`jupyter_ydjango.store.grants`) rather than from :attr:`permission` alone: set
    #: for every user but the server's owner where roles are in use.
    roles: bool = False
    #: The groups the user is a member of, as their authenticator says (a JupyterHub's);
    #: grants to these groups apply to them, as do grants to their Django groups.
    groups: tuple[str, ...] = ()

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
        shown = {key: data.get(key) or "" for key in ("name", "display_name", "initials",
                                                      "color")}
        if not all(isinstance(value, str) for value in shown.values()):
            raise IdentityError("names, initials and colours must be strings")
        roles, groups = data.get("roles", False), data.get("groups") or []
        if not isinstance(roles, bool):
            raise IdentityError("roles must be true or false")
        if not isinstance(groups, (list, tuple)) or not all(
                isinstance(group, str) and group for group in groups):
            raise IdentityError("groups must be a list of names")
        return cls(username, permission, **shown, roles=roles, groups=tuple(groups))


def secret_problem(secret: str) -> str:
    """Why ``secret`` may not sign identities (``""`` if it may): too short, or an example's."""
    if secret.strip().lower() in EXAMPLE_SECRETS:
        return "the shared secret is an example value: generate one, e.g. with " \
               "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return (f"the shared secret has {len(secret.encode())} bytes, fewer than "
                f"{MIN_SECRET_BYTES}: generate one, e.g. with "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return ""


def _signer(secret: str) -> signing.TimestampSigner:
    if not secret:
        raise IdentityError("no shared secret is configured")
    return signing.TimestampSigner(key=secret, salt=_SALT, fallback_keys=[])


@dataclass(frozen=True)
class SignedRequest:
    """What a verified header says: who, and the nonce the service must see only once."""

    identity: Identity
    nonce: str


def sign_identity(identity: Identity, secret: str, *, method: str, path: str) -> str:
    """Sign ``identity`` with the shared ``secret`` for one request (for :data:`HEADER`):
    ``method`` (``GET`` for a websocket) and ``path``, the request's path as the service
    routes it (decoded, without the query), which the signature covers with a fresh nonce."""
    return _signer(secret).sign_object({
        "identity": identity.as_dict(), "method": method.upper(), "path": path,
        "nonce": secrets.token_urlsafe(16),
    }, compress=True)


def verify_identity(token: str, secret: str, *, method: str, path: str,
                    max_age: float = DEFAULT_MAX_AGE) -> SignedRequest:
    """The identity and nonce in a signed ``token``, for a request of ``method`` on ``path``.

    The signed path may be a suffix of ``path``: the service may be mounted under a prefix
    the Jupyter server does not see (a reverse proxy's).

    :raises IdentityError: the signature is wrong (forged, or another secret), the token is
        older than ``max_age`` seconds, it was made for another request, or it does not hold
        a valid identity.
    """
    try:
        data = _signer(secret).unsign_object(token, max_age=max_age)
    except signing.SignatureExpired as exc:
        raise IdentityError(f"expired identity: {exc}") from None
    except (signing.BadSignature, ValueError) as exc:
        raise IdentityError(f"invalid identity signature: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("nonce"), str) or not data["nonce"]:
        raise IdentityError("the identity is not bound to a request (a header of an older "
                            "version, or not ours)")
    signed_path = data.get("path")
    if data.get("method") != method.upper() or not isinstance(signed_path, str) or not (
            signed_path and path.endswith(signed_path)):
        raise IdentityError(f"the identity was signed for {data.get('method')} "
                            f"{signed_path!r}, not for {method.upper()} {path!r}")
    return SignedRequest(Identity.from_dict(data.get("identity")), data["nonce"])
