"""The seed example's ASGI application: Django for HTTP, the example consumers for websockets.

Websocket routes: ``seed/<room>`` the seed's example on y-py (only where ``y_py`` imports: the
``[ypy]`` extra installs on Python < 3.13), ``seed-pycrdt/<room>`` the same example written for
pycrdt, ``ro/<room>`` a consumer with read-only connections.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "seedapp.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from . import consumers_pycrdt  # noqa: E402
from .readonly import ReadOnlyConsumer  # noqa: E402

try:
    import y_py  # noqa: F401  (the [ypy] extra)
except ImportError:
    HAS_YPY = False
else:
    HAS_YPY = True

routes = [
    path("seed-pycrdt/<str:room>", consumers_pycrdt.DocConsumer.as_asgi()),
    path("ro/<str:room>", ReadOnlyConsumer.as_asgi()),
]
if HAS_YPY:
    from .consumers import DocConsumer

    routes.append(path("seed/<str:room>", DocConsumer.as_asgi()))

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AuthMiddlewareStack(URLRouter(routes)),
})
