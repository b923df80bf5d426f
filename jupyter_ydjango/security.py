"""Websocket origin checking, where Django projects import it: see
:mod:`jupyter_ydjango.api.security`."""

from jupyter_ydjango.api.security import (
    BrowserOriginValidator,
)

__all__ = [
    "BrowserOriginValidator",
]
