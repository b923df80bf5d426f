"""The Django Channels ASGI application (HTTP and websocket).

Run it with ``daphne jupyter_ydjango.asgi:application``; settings default to
:mod:`jupyter_ydjango.settings`.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jupyter_ydjango.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs Django set up)

from jupyter_ydjango.api.direct import DirectRoutes  # noqa: E402
from jupyter_ydjango.api.middleware import DjangoLoginFallback, IdentityMiddleware  # noqa: E402
from jupyter_ydjango.api.rate_limits import RateLimitMiddleware  # noqa: E402
from jupyter_ydjango.api.routing import websocket_urlpatterns  # noqa: E402
from jupyter_ydjango.api.security import BrowserOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": IdentityMiddleware(RateLimitMiddleware(DirectRoutes(django_asgi_app))),
        "websocket": BrowserOriginValidator(
            DjangoLoginFallback(IdentityMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
