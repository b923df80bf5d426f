"""``/api/ydjango/links/<path>``: role links on a document or folder; and opening one.

* ``GET``: ``{"path", "links": [{"id", "role", "expires", "revoked", "opened", "createdBy",
  "created"}]}``;
* ``POST`` ``{"role", "folder": false, "expiresIn": seconds}``: make a link; the answer holds
  its ``token``, shown this once: the link is ``{base}ydjango/join/{token}`` of the Jupyter
  server (no token of the server is in it);
* ``DELETE`` ``{"id"}``: revoke it; the open connections of its guests close (4403).

Only the server's owner and Django staff manage links (403 otherwise).
``POST /api/ydjango/join`` ``{"token"}`` opens a link for the Jupyter server: ``{"id",
"group", "role", "path", "expires"}`` (404 unknown, 410 expired or revoked); the Jupyter
server makes its visitor a guest of that group (see :mod:`jupyter_ydjango.jupyter.guests`).
See :mod:`jupyter_ydjango.store.links`.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from jupyter_ydjango.api.csrf import mutating
from jupyter_ydjango.api.http import arequest_identity, error_response, json_body
from jupyter_ydjango.api.roles import announce, managing
from jupyter_ydjango.store import grants, links
from jupyter_ydjango.store.dispatch import run_db
from jupyter_ydjango.store.links import LinkError, LinkInfo
from jupyter_ydjango.store.records import api_path_of, get_document


def _shown(link: LinkInfo) -> dict[str, Any]:
    return {"id": link.id, "role": link.role, "expires": link.expires.isoformat(),
            "revoked": link.revoked.isoformat() if link.revoked else None,
            "opened": link.opened, "createdBy": link.created_by,
            "created": link.created.isoformat()}


def _path_of(link: LinkInfo) -> str:
    if link.document_id is not None:
        document = get_document(link.document_id)
        return document.path if document is not None else ""
    return api_path_of(link.folder) or ""


@mutating
@require_http_methods(["GET", "POST", "DELETE"])
async def links_view(request: HttpRequest, path: str) -> HttpResponse:
    """The links on ``path`` (GET), or a new link (POST) or a revocation (DELETE)."""
    asked = await managing(request, path, "links", reading_too=True)
    if isinstance(asked, HttpResponse):
        return asked
    identity, api_path, body = asked
    location, target = await run_db(partial(grants.target_of, api_path,
                                            folder=bool(body.get("folder"))))
    try:
        if request.method == "POST":
            seconds = body.get("expiresIn", links.DEFAULT_LIFETIME.total_seconds())
            if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
                return error_response(400, "expiresIn is a number of seconds")
            link, token = await run_db(partial(
                links.create, str(body.get("role", "")), lifetime=timedelta(seconds=seconds),
                by=identity.username, **target))
            return JsonResponse({**_shown(link), "path": api_path, "token": token}, status=201)
        if request.method == "DELETE":
            link = await run_db(partial(links.revoke, str(body.get("id", "")),
                                        by=identity.username))
            await announce(await run_db(partial(
                grants.rooms_covered, document_id=link.document_id,
                folder=None if link.document_id else link.folder)))
            return JsonResponse({**_shown(link), "path": api_path})
    except LinkError as exc:
        return error_response(exc.status, str(exc))
    found = await run_db(links.links_on, location, target.get("document_id"))
    return JsonResponse({"path": api_path, "links": [_shown(link) for link in found]})


@mutating
@require_http_methods(["POST"])
async def join_view(request: HttpRequest) -> HttpResponse:
    """Open a link (for the Jupyter server, on behalf of its visitor)."""
    if await arequest_identity(request) is None:
        return error_response(401, "not authenticated")
    try:
        token = str(json_body(request).get("token", ""))
        link = await run_db(links.redeem, token)
    except LinkError as exc:
        return error_response(exc.status, str(exc))
    except ValueError as exc:
        return error_response(400, str(exc))
    return JsonResponse({"id": link.id, "group": link.group, "role": link.role,
                         "path": await run_db(_path_of, link),
                         "folder": link.document_id is None,
                         "expires": link.expires.isoformat()})
