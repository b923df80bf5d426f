"""``/api/ydjango/roles/<path>``: who has which role on a document or folder; grant, change,
revoke. And the live side: every open connection that a change covers hears of it.

* ``GET``: ``{"path", "document": fileId | null, "grants": [{"subject", "role", "on",
  "grantedBy", "updated"}], "manage": bool, "role": role | null}``, the grants on the
  document or folder and on the folders above it (``on``: ``"document"`` or the folder's API
  path), whether the requesting user may change them, and the requesting user's own role
  there (the last one, runner, for an identity whose rights do not come from roles);
* ``PUT`` ``{"subject": "user:NAME" | "group:NAME", "role": "viewer" | "editor" | "runner",
  "folder": false}``: give the role (replacing the subject's role there);
* ``DELETE`` ``{"subject", "folder": false}``: take it away.

``path`` names the document of that path when one is known (a file opened collaboratively
at least once), else the folder; ``"folder": true`` makes it the folder in any case. Only
the server's owner (an identity whose rights do not come from roles) and Django staff may
change grants (403 otherwise).

After a change, each room the change covers is sent a ``roles.changed`` event on its group,
in every process (:func:`announce`): each of its connections looks up its role again, and
turns read-only, editable or closed (see
:meth:`~jupyter_ydjango.api.consumers.DocumentConsumer.roles_changed`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_http_methods

from jupyter_ydjango.api.csrf import mutating
from jupyter_ydjango.api.http import arequest_identity, error_response, json_body
from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.models import ROLES
from jupyter_ydjango.rooms.relay import room_group_name
from jupyter_ydjango.store import grants
from jupyter_ydjango.store.dispatch import run_db
from jupyter_ydjango.store.grants import GrantError, Subject
from jupyter_ydjango.store.paths import PathError, normalize_api_path
from jupyter_ydjango.store.records import api_path_of

#: The event type a room's connections get when a grant covering it changed.
ROLES_CHANGED = "roles.changed"


async def announce(room_names: list[str]) -> None:
    """Tell the connections of these rooms, in every process, that roles changed."""
    layer = get_channel_layer()
    if layer is None:
        return
    for name in room_names:
        await layer.group_send(room_group_name(name), {"type": ROLES_CHANGED})


def announce_grant_change(document_id: str | None, folder: str | None) -> None:
    """From synchronous code (the admin, the ``roles`` command): tell the connections that a
    change of the grant on ``document_id`` or ``folder`` covers. It reaches every process
    through a Redis channel layer; with the in-memory layer, only this process's.

    Told once the change is committed: the admin saves and deletes inside a transaction,
    and a connection told before its commit read the role it was leaving (and so heard of
    no change) whenever its look-up ran first. Outside a transaction, told at once."""
    transaction.on_commit(partial(_announce_from_sync, document_id, folder))


def _announce_from_sync(document_id: str | None, folder: str | None) -> None:
    async_to_sync(announce)(grants.rooms_covered(
        document_id=document_id, folder=None if document_id else folder))


def may_manage(request: HttpRequest, identity: Identity) -> bool:
    """Whether ``identity`` may change grants and links: the server's owner (an identity
    whose rights do not come from roles) or, logged in to Django, its staff."""
    if identity.roles:
        return False
    user = getattr(request, "user", None)
    from_django_login = user is not None and user.is_authenticated and (
        user.get_username() == identity.username)
    return not from_django_login or bool(user.is_staff)


def _listing(api_path: str, location: str, document_id: str | None) -> dict[str, Any]:
    found = grants.grants_covering(location, document_id)
    return {"path": api_path, "document": document_id, "grants": [
        {"subject": str(g.subject), "role": g.role,
         "on": "document" if g.document_id else api_path_of(g.folder) or "",
         "grantedBy": g.granted_by, "updated": g.updated.isoformat()} for g in found]}


async def managing(request: HttpRequest, path: str, what: str, *, reading_too: bool = False,
                   ) -> tuple[Identity, str, dict[str, Any]] | HttpResponse:
    """Who asks, about which API path, with which JSON body (``{}`` for a ``GET``); or the
    error answer: 401, 403 (an unservable path, or a change, or with ``reading_too`` any
    request, by someone who may not manage ``what``), 400 (a body that is not JSON)."""
    asked = await asked_about(request, path)
    if isinstance(asked, HttpResponse):
        return asked
    identity, api_path = asked
    if (reading_too or request.method != "GET") and not may_manage(request, identity):
        return error_response(403, f"only the server's owner or Django staff manage {what}")
    try:
        body = json_body(request) if request.method != "GET" else {}
    except ValueError as exc:
        return error_response(400, str(exc))
    return identity, api_path, body


async def asked_about(request: HttpRequest, path: str) -> tuple[Identity, str] | HttpResponse:
    """Who asks, and about which API path; or the error answer (401, 403)."""
    identity = await arequest_identity(request)
    if identity is None:
        return error_response(401, "not authenticated")
    if not path.strip("/"):
        return identity, ""  # the root folder
    try:
        return identity, normalize_api_path(path.strip("/"))
    except PathError as exc:
        return error_response(403, str(exc))


@mutating
@require_http_methods(["GET", "PUT", "DELETE"])
async def roles_view(request: HttpRequest, path: str) -> HttpResponse:
    """The grants on ``path`` (GET), or a grant (PUT) or revocation (DELETE)."""
    asked = await managing(request, path, "roles")
    if isinstance(asked, HttpResponse):
        return asked
    identity, api_path, body = asked
    location, target = await run_db(partial(grants.target_of, api_path,
                                            folder=bool(body.get("folder"))))
    document_id = target.get("document_id")
    if request.method == "GET":
        listing = await run_db(_listing, api_path, location, document_id)
        yours = ROLES[-1] if not identity.roles else await run_db(partial(
            grants.role_of, identity.username, location, document_id, identity.groups))
        return JsonResponse({**listing, "manage": may_manage(request, identity),
                             "role": yours})
    try:
        subject = Subject.parse(str(body.get("subject", "")))
        if request.method == "PUT":
            await run_db(partial(grants.grant, subject, str(body.get("role", "")),
                                 by=identity.username, **target))
        elif not await run_db(partial(grants.revoke, subject, by=identity.username,
                                      **target)):
            return error_response(404, f"{subject} has no role on {api_path or '/'}")
    except GrantError as exc:
        return error_response(400, str(exc))
    await announce(await run_db(partial(grants.rooms_covered, **target)))
    return JsonResponse(await run_db(_listing, api_path, location, document_id))


def _access(identity: Identity, api_path: str) -> dict[str, Any]:
    location, target = grants.target_of(api_path)
    role = grants.role_of(identity.username, location, target.get("document_id"),
                          identity.groups)
    below = [api_path_of(found) for found in grants.granted_below(
        identity.username, location, identity.groups)]
    return {"path": api_path, "role": role, "below": [p for p in below if p]}


@require_http_methods(["GET"])
async def access_view(request: HttpRequest, path: str) -> HttpResponse:
    """``GET /api/ydjango/access/<path>``: what the requesting user may do there, as the
    Jupyter server's :class:`~jupyter_ydjango.jupyter.authorizer.RolesAuthorizer` asks:
    ``{"path", "role": "viewer" | "editor" | "runner" | null, "below": [path]}``
    (``below``: the API paths under that folder where they have a grant, so that its
    listing leads there). An identity whose rights do not come from roles (the server's
    owner) has every role."""
    asked = await asked_about(request, path)
    if isinstance(asked, HttpResponse):
        return asked
    identity, api_path = asked
    if not identity.roles:
        return JsonResponse({"path": api_path, "role": ROLES[-1], "below": []})
    return JsonResponse(await run_db(_access, identity, api_path))
