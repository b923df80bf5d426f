"""The identity middleware, where Django projects include it: see
:mod:`jupyter_ydjango.api.middleware`."""

from jupyter_ydjango.api.middleware import (
    ERROR_KEY,
    NOT_AUTHENTICATED,
    DjangoLoginFallback,
    IdentityMiddleware,
    identity_from_scope,
    scope_decides,
)

__all__ = [
    "ERROR_KEY",
    "NOT_AUTHENTICATED",
    "DjangoLoginFallback",
    "IdentityMiddleware",
    "identity_from_scope",
    "scope_decides",
]
