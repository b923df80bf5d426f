"""Websocket origin checking for the shipped application."""

from __future__ import annotations

from typing import Any

from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Refuse cross-site websockets from browsers; let non-browser clients through.

    A browser always sends ``Origin``; it must name one of ``ALLOWED_HOSTS`` so that another
    site cannot open a room with its visitors' cookies. Clients that send no ``Origin``
    (scripts, servers, proxies) carry no ambient browser credentials and are let through to
    the consumer's own authentication.
    """

    def __init__(self, application: Any) -> None:
        super().__init__(application, settings.ALLOWED_HOSTS)

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)
