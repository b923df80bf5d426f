"""A Jupyter authorizer backed by the grants: share one notebook, not the whole server.

Enabled with ``--ServerApp.authorizer_class=jupyter_ydjango.jupyter.authorizer.RolesAuthorizer``.
The server's owners (:attr:`RolesAuthorizer.owners`; by default the JupyterHub user the server
belongs to when JupyterHub logs its users in, or, with Jupyter's own token or password login,
as on Binder, whoever logs in with it, but not the guests of role links,
:mod:`jupyter_ydjango.jupyter.guests`) may do everything. Anyone
else may do exactly what their roles allow (:mod:`jupyter_ydjango.store.grants`):

* ``contents``: read a file or folder they have a role on (shown as not writable where they
  are only viewers), and list the folders that lead to one (showing only what leads there;
  the root is listed to everyone let in); write where they are editors (a copy's source must
  be readable, a rename's target writable);
* ``kernels`` and ``sessions``: start, use and stop the kernel of a notebook they are runners
  of (a kernel is known by the session that holds it), and list those (lists show only
  theirs);
* ``terminals`` and ``server`` (shutdown): never;
* anything else (the lab page, settings, kernelspecs): read only.

The roles are asked of the Django side (``GET /api/ydjango/access/<path>``), embedded or
remote, and kept :attr:`RolesAuthorizer.cache_seconds` per user and path. Collaborative rooms
check the roles again on every connection and on every change of a grant.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote

from jupyter_server.auth import Authorizer, IdentityProvider, User
from jupyter_server.auth.identity import PasswordIdentityProvider
from traitlets import Float, List, Unicode

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.jupyter.guests import GuestIdentityProvider, GuestUser

#: The order of the roles (each allows what the ones before it allow).
ROLE_ORDER = ("viewer", "editor", "runner")
#: The extension's key in the web application's settings.
EXTENSION_SETTING = "jupyter_ydjango"
#: Resources a user with roles may never use.
NEVER = frozenset({"terminals", "server"})


def allows(role: str | None, needed: str) -> bool:
    """Whether ``role`` is ``needed`` or above it."""
    return role in ROLE_ORDER and ROLE_ORDER.index(role) >= ROLE_ORDER.index(needed)


def groups_of(user: User) -> tuple[str, ...]:
    """The groups a user's authenticator says they are in: a JupyterHub user's groups, a
    role link guest's links (:mod:`jupyter_ydjango.jupyter.guests`)."""
    hub_user = getattr(user, "hub_user", None) or {}
    groups = list(hub_user.get("groups") or () if isinstance(hub_user, dict) else ())
    groups.extend(getattr(user, "ydjango_groups", ()))
    return tuple(group for group in groups if isinstance(group, str) and group)


def path_of(handler: Any) -> str | None:
    """The API path a request is about (its ``path`` argument), or ``None``."""
    path = handler.path_kwargs.get("path")
    if path is None and handler.path_args:
        path = handler.path_args[-1]
    return path if isinstance(path, str) else None


def json_body(handler: Any) -> dict[str, Any]:
    """The request's JSON object body, ``{}`` for none or anything else."""
    try:
        body = json.loads(handler.request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def leads_to(path: str, below: list[str]) -> bool:
    """Whether ``path`` is one of ``below`` or a folder above one of them."""
    path = path.strip("/")
    return any(b == path or b.startswith(path + "/") for b in below)


def _rewrite(handler: Any, change: Any) -> None:
    """Make ``handler``'s JSON answer go through ``change`` (the handlers answer with one
    ``finish(json.dumps(model))``)."""
    write = handler.write

    def filtered(chunk: Any) -> None:
        if isinstance(chunk, (str, bytes)):
            try:
                model = json.loads(chunk)
            except ValueError:
                model = None
            if model is not None:
                chunk = json.dumps(change(model))
        write(chunk)

    handler.write = filtered


def keep_in_listing(handler: Any, below: list[str]) -> None:
    """Show in a folder's listing only the entries that lead to ``below``."""
    def change(model: Any) -> Any:
        if isinstance(model, dict) and isinstance(model.get("content"), list):
            model["content"] = [entry for entry in model["content"] if isinstance(entry, dict)
                                and leads_to(str(entry.get("path", "")), below)]
        return model

    _rewrite(handler, change)


def shown_read_only(handler: Any, below: list[str]) -> None:
    """Show the file or folder of ``handler``'s answer as not writable, and the entries of a
    folder's listing too, but for those that lead to ``below`` (where other roles may
    apply): a viewer's JupyterLab then takes the notebook as read-only, as the contents API
    treats it."""
    def change(model: Any) -> Any:
        if isinstance(model, dict) and "writable" in model:
            model["writable"] = False
            for entry in model.get("content") if isinstance(model.get("content"), list) else ():
                if isinstance(entry, dict) and "writable" in entry and not leads_to(
                        str(entry.get("path", "")), below):
                    entry["writable"] = False
        return model

    _rewrite(handler, change)


def keep_running(handler: Any, sessions: set[str], kernels: set[str]) -> None:
    """Show in a list of sessions or kernels only ``sessions`` and ``kernels``."""
    def change(model: Any) -> Any:
        if not isinstance(model, list):
            return model
        return [item for item in model if isinstance(item, dict)
                and str(item.get("id")) in (sessions if "kernel" in item else kernels)]

    _rewrite(handler, change)


def keep_token_from_others(settings: dict[str, Any]) -> None:
    """Give JupyterLab's and Notebook's pages the server's token only where their user owns the
    server.

    Both put the server's token in every page they serve (``token`` in the page config), to
    whoever is let in, and their frontend then sends it with each request: a guest of a role
    link, or anyone the roles authorizer lets in, would hold the whole server. This installs a
    page config hook (after the one already there, such as JupyterHub's) that serves their
    pages without it; their frontend then uses its cookie, as in any browser login.
    """
    earlier = settings.get("page_config_hook")

    def hook(handler: Any, page_config: dict[str, Any]) -> dict[str, Any]:
        if earlier is not None:
            page_config = earlier(handler, page_config)
        user = handler.current_user
        authorizer = handler.authorizer
        owner = (not isinstance(user, GuestUser) and user is not None
                 and (not isinstance(authorizer, RolesAuthorizer)
                      or authorizer.is_owner(handler, user)))
        # (the shared page config itself is left as it is: a copy without the token)
        return page_config if owner else {**page_config, "token": ""}

    settings["page_config_hook"] = hook


class RolesAuthorizer(Authorizer):
    """What the grants allow, for every user but the server's owners."""

    owners = List(
        Unicode(), config=True,
        help="User names with every right on this server. Default: JUPYTERHUB_USER when "
             "JupyterHub logs users in to the server; else, with Jupyter's own token or "
             "password login (as on Binder), everyone who logs in (they hold the server's "
             "secret).",
    )
    cache_seconds = Float(
        2.0, config=True,
        help="Seconds a user's role on a path is kept before it is asked again.",
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def is_owner(self, handler: Any, user: User) -> bool:
        """Whether ``user`` owns the server (and so has every right on it)."""
        if isinstance(user, GuestUser):
            return False
        owners = set(self.owners)
        provider = getattr(handler, "identity_provider", None)
        # (BinderHub sets JUPYTERHUB_USER on servers whose login is Jupyter's own token)
        if not owners and os.environ.get("JUPYTERHUB_USER") and getattr(
                provider, "hub_auth", None) is not None:
            owners = {os.environ["JUPYTERHUB_USER"]}
        if owners:
            return user.username in owners
        return type(provider) in (IdentityProvider, PasswordIdentityProvider,
                                  GuestIdentityProvider)

    def identity_of(self, handler: Any, user: User, permission: str) -> Identity:
        """The identity the Django side is told of for ``user``: their rights come from
        their roles unless they own the server."""
        owner = self.is_owner(handler, user)
        return Identity(username=user.username, permission=permission,  # type: ignore[arg-type]
                        name=user.name or "", display_name=user.display_name or "",
                        initials=user.initials or "", color=user.color or "",
                        roles=not owner, groups=groups_of(user))

    def hub_allows(self, user: User) -> bool:
        """Under JupyterHub, whether the hub lets ``user`` in to this server at all (its
        ``access:servers`` scopes: JupyterHub's own authorizer checks them again, as this one
        does, though its identity provider has already)."""
        hub_auth = getattr(self.identity_provider, "hub_auth", None)
        hub_user = getattr(user, "hub_user", None)
        if hub_auth is None or hub_user is None:
            return True
        return bool(hub_auth.check_scopes(hub_auth.oauth_scopes, hub_user))

    async def is_authorized(self, handler: Any, user: User, action: str,
                            resource: str) -> bool:
        if not self.hub_allows(user):
            return False
        if self.is_owner(handler, user):
            return True
        if resource in NEVER:
            return False
        if resource in ("kernels", "sessions"):
            return await self._kernels(handler, user, action)
        if resource == "contents":
            return await self._contents(handler, user, action)
        path = path_of(handler)
        if resource == "nbconvert" and path is not None:  # /nbconvert/{format}/{path}
            return action == "read" and allows(
                (await self._access(handler, user, path)).get("role"), "viewer")
        return action == "read"

    async def _contents(self, handler: Any, user: User, action: str) -> bool:
        from jupyter_ydjango.jupyter import handlers as ours

        if isinstance(handler, (ours.RoomHandler, ours.RoomStatusHandler)):
            return True  # the Django side checks the role on the document (by its id)
        if isinstance(handler, (ours.UndoRedoHandler, ours.ForkHandler)):
            return action == "read"  # by room id: restores and forks are the owners'
        path = path_of(handler)
        if path is None:
            return action == "read"  # a page, not a file
        if action == "read":
            return await self._may_read(handler, user, path)
        if not allows((await self._access(handler, user, path)).get("role"), "editor"):
            return False
        body = json_body(handler)  # a copy reads its source; a rename writes its target
        source, target = body.get("copy_from"), body.get("path")
        if isinstance(source, str) and not allows(
                (await self._access(handler, user, source)).get("role"), "viewer"):
            return False
        return not (handler.request.method == "PATCH" and isinstance(target, str) and not allows(
            (await self._access(handler, user, target)).get("role"), "editor"))

    async def _may_read(self, handler: Any, user: User, path: str) -> bool:
        """Whether ``user`` may read ``path``: they have a role there, or it is a folder
        that leads to one (its listing then shows only what leads there)."""
        access = await self._access(handler, user, path)
        below = access.get("below") or []
        if allows(access.get("role"), "viewer"):
            if handler.request.method == "GET" and not allows(access.get("role"), "editor"):
                shown_read_only(handler, [str(p) for p in below])
            return True
        if not below and path.strip("/"):
            return False  # (the root is listed to everyone let in: empty if nothing leads on)
        if handler.request.method == "GET":
            keep_in_listing(handler, [str(p) for p in below])
        return True

    async def _kernels(self, handler: Any, user: User, action: str) -> bool:
        path = await self._session_path(handler)
        if path is None:
            # a list of kernels or sessions (shown filtered); starting a kernel with no
            # notebook is not allowed
            if not (action == "read" and handler.request.method in ("GET", "HEAD")):
                return False
            await self._filter_running(handler, user)
            return True
        access = await self._access(handler, user, path)
        if not allows(access.get("role"), "runner"):
            return False
        target = json_body(handler).get("path") if handler.request.method == "PATCH" else None
        return not isinstance(target, str) or allows(
            (await self._access(handler, user, target)).get("role"), "runner")

    async def _filter_running(self, handler: Any, user: User) -> None:
        """Show in a list of sessions or kernels only those of notebooks ``user`` runs."""
        mine: set[str] = set()
        kernels: set[str] = set()
        for session in await handler.settings["session_manager"].list_sessions():
            path = session.get("path")
            if isinstance(path, str) and allows(
                    (await self._access(handler, user, path)).get("role"), "runner"):
                mine.add(str(session.get("id")))
                kernels.add(str((session.get("kernel") or {}).get("id")))
        keep_running(handler, mine, kernels)

    async def _session_path(self, handler: Any) -> str | None:
        """The notebook whose kernel or session the request is about (``None``: none)."""
        if handler.request.method == "POST" and not handler.path_kwargs:
            path = json_body(handler).get("path")
            return path if isinstance(path, str) and path else None
        sessions = handler.settings["session_manager"]
        kernel_id = handler.path_kwargs.get("kernel_id")
        session_id = handler.path_kwargs.get("session_id")
        if kernel_id is None and session_id is None:
            return None
        for session in await sessions.list_sessions():
            if session.get("id") == session_id or (
                    kernel_id is not None and (session.get("kernel") or {}).get("id")
                    == kernel_id):
                return session.get("path") or None
        return ""  # a kernel of no session: the root's runners only

    async def _access(self, handler: Any, user: User, path: str) -> dict[str, Any]:
        """What the Django side says ``user`` may do at ``path`` (cached)."""
        key = (user.username, path.strip("/"))
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        extension = handler.settings.get(EXTENSION_SETTING)
        if extension is None:
            return {}
        backend = await extension.get_backend()
        identity = self.identity_of(handler, user, "write")
        response = await backend.request(
            "GET", "/api/ydjango/access/" + quote(key[1]), identity=identity)
        answer = response.json() if response.status == 200 else {}
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (now, answer)
        return answer
