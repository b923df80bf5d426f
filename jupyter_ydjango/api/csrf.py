"""Cross-site request forgery: what a view that changes something asks of a request.

A browser sends a site's cookies with any request to it, whichever page makes it, so a
page of another site can post a form (``application/x-www-form-urlencoded``,
``multipart/form-data`` or ``text/plain``: the content types a page may send without asking
first) to the service with a logged-in Django user's session. Django's answer is its CSRF
token; ours is :func:`mutating`:

* a request that brings credentials of its own goes through as it is: the Jupyter server's
  in-process bridge and a signed identity header (:func:`~.middleware.scope_decides`; the
  Jupyter server checked its own XSRF rules first, and the header is bound to the request),
  or an ``Authorization`` header such as a bearer token (a page of another site cannot set
  one without a CORS preflight the service never allows); so does one with no credentials
  at all, which is answered 401;
* any other request (a Django session cookie, credentials of HTTP's Basic scheme) must
  pass Django's CSRF check (the ``X-CSRFToken`` header matching the ``csrftoken`` cookie,
  and an ``Origin`` or, over HTTPS, a ``Referer`` of this site): 403 otherwise; then bring
  its body as JSON: 415 for any other content type.

:func:`csrf_failure` is the project's ``CSRF_FAILURE_VIEW``: the API's refusals are JSON
``{"error": ...}`` as its other errors, the admin's Django's page.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from inspect import iscoroutinefunction
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views import csrf
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from jupyter_ydjango.api.http import error_response
from jupyter_ydjango.api.middleware import scope_decides

__all__ = ["brings_own_credentials", "csrf_failure", "mutating"]

#: The content type of every body the API reads.
JSON_TYPE = "application/json"

View = Callable[..., HttpResponse | Awaitable[HttpResponse]]


def brings_own_credentials(request: HttpRequest) -> bool:
    """Whether nothing in the request's credentials is what a browser adds by itself (see
    the module): it comes through the bridge or with a signed identity header, or brings an
    ``Authorization`` header of a scheme a browser never sends unasked (not ``Basic`` nor
    ``Digest``, which it repeats to a site once given), or no credentials at all (no cookie:
    it is answered 401)."""
    if scope_decides(getattr(request, "scope", {})):
        return True
    scheme = request.headers.get("authorization", "").partition(" ")[0].lower()
    if scheme:
        return scheme not in ("basic", "digest")
    return not request.COOKIES


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's answer to a request that failed its CSRF check: JSON for the API."""
    if "/api/" in request.path:
        return error_response(403, f"CSRF check failed: {reason}" if reason else
                              "CSRF check failed")
    return csrf.csrf_failure(request, reason=reason)


def _body_problem(request: HttpRequest) -> HttpResponse | None:
    """415 for a body that is not JSON (an empty one is none)."""
    if request.body and request.content_type != JSON_TYPE:
        return error_response(415, f"the body must be {JSON_TYPE}, "
                                   f"not {request.content_type or 'of no type'}")
    return None


def mutating(view: View) -> View:
    """Protect ``view`` (sync or async), which changes something, from cross-site requests
    (see the module). Django's own CSRF middleware is then left out for it (a bridge request
    has no CSRF cookie to show)."""
    protected = csrf_protect(_checking_body(view))  # Django's check answers 403 first

    if iscoroutinefunction(view):
        @functools.wraps(view)
        async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if brings_own_credentials(request):
                return await view(request, *args, **kwargs)
            return await protected(request, *args, **kwargs)

        return csrf_exempt(guarded_async)

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if brings_own_credentials(request):
            return view(request, *args, **kwargs)
        return protected(request, *args, **kwargs)

    return csrf_exempt(guarded)


def _checking_body(view: View) -> View:
    """``view``, refusing first a body that is not JSON."""
    if iscoroutinefunction(view):
        @functools.wraps(view)
        async def checked_async(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            return _body_problem(request) or await view(request, *args, **kwargs)

        return checked_async

    @functools.wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _body_problem(request) or view(request, *args, **kwargs)

    return checked
