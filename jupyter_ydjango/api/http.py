"""What the HTTP views share: who is asking, the JSON body, and errors as the API answers them."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, JsonResponse

from jupyter_ydjango.api.calls import parse_json_object
from jupyter_ydjango.api.identity import SCOPE_KEY, Identity
from jupyter_ydjango.api.middleware import scope_decides


def error_response(status: int, message: str) -> JsonResponse:
    """An error as the API answers them: ``{"error": message}`` with ``status``."""
    return JsonResponse({"error": message}, status=status)


def request_identity(request: HttpRequest) -> Identity | None:
    """The identity of a request: from the scope (bridge or signed header), else Django's
    logged-in user. A refused signed header is not replaced by anything."""
    scope: dict[str, Any] = getattr(request, "scope", {})
    if scope_decides(scope):
        return scope.get(SCOPE_KEY)
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        name = user.get_full_name()
        return Identity(user.get_username(), "write", name, name)
    return None


async def arequest_identity(request: HttpRequest) -> Identity | None:
    """:func:`request_identity` from async code: the Django login (a database query) is looked up in
    a thread only when the scope brings no identity of its own."""
    scope: dict[str, Any] = getattr(request, "scope", {})
    if scope_decides(scope):
        return scope.get(SCOPE_KEY)
    return await sync_to_async(request_identity)(request)


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's body as a JSON object
    (:func:`~jupyter_ydjango.api.calls.parse_json_object`)."""
    return parse_json_object(request.body)
