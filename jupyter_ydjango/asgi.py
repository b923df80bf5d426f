"""The ASGI application (``jupyter_ydjango.asgi:application``), where servers are pointed at it:
see :mod:`jupyter_ydjango.project.asgi`."""

from jupyter_ydjango.project.asgi import (
    application,
    django_asgi_app,
)

__all__ = [
    "application",
    "django_asgi_app",
]
