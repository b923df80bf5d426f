"""Websocket routes, where Django projects include them: see :mod:`jupyter_ydjango.api.routing`."""

from jupyter_ydjango.api.routing import (
    websocket_urlpatterns,
)

__all__ = [
    "websocket_urlpatterns",
]
