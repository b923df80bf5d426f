"""The Jupyter server extension: jupyter-collaboration's server API, answered by Django.

Users configure it as ``c.YDjango.<option>`` (``jupyter_server_config.py``) or
``--YDjango.<option>=...`` on the command line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Awaitable, Callable
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Int, Unicode, default, validate

from jupyter_ydjango import heap
from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.jupyter import collaboration
from jupyter_ydjango.jupyter.authorizer import RolesAuthorizer, keep_token_from_others
from jupyter_ydjango.jupyter.backend import Backend, BackendError
from jupyter_ydjango.jupyter.events import CollaborationEvents
from jupyter_ydjango.jupyter.guests import GuestIdentityProvider, JoinHandler
from jupyter_ydjango.jupyter.handlers import (
    ForkHandler,
    HistoryAuthorsHandler,
    LinksHandler,
    ManagementHandler,
    RoomHandler,
    RoomStatusHandler,
    SessionHandler,
    TimelineHandler,
    UndoRedoHandler,
)

#: Schema of jupyter_server's contents events (a rename keeps the file's ``fileId``; a deleted
#: file's rooms stop saving it).
CONTENTS_EVENTS = "https://events.jupyter.org/jupyter_server/contents_service/v1"
#: Server extensions that claim the same URLs as this one.
CONFLICTING_EXTENSIONS = ("jupyter_server_ydoc", "jupyter_collaboration")
#: Who the Django side hears from when the Jupyter server itself reports a rename.
SERVER_IDENTITY = Identity("jupyter-server", "write", "Jupyter server", "Jupyter server")


class YDjango(ExtensionApp):
    """Real-time collaboration for JupyterLab, backed by Django Channels.

    Serves ``{base_url}api/collaboration/session/*``, ``{base_url}api/collaboration/room/*``,
    ``.../timeline/*``, ``.../undo_redo/*`` and ``.../fork/*`` (the API of
    jupyter-collaboration that the stock RTC frontend speaks) and
    ``{base_url}api/ydjango/rooms/*`` and ``{base_url}api/ydjango/history/*``, and hands
    every request to the Django side: by default the embedded Django project, run in this
    process on the server's event loop (SQLite in the Jupyter data directory); with
    :attr:`remote_url`, a separate Django Channels service.

    **jupyter-collaboration installed as well**: its server extension
    (``jupyter_server_ydoc``) claims the same URLs. Two backends for one document would split
    its edits between two copies, so this extension must be the only one answering: it logs
    an error that names the conflict and the fix, and puts its own routes ahead of the other
    extension's, so that the collaboration API is consistently ours.

    **Other server extensions** (jupyterlab-chat, jupyter-server-nbmodel, Jupyter AI) find
    jupyter-collaboration's in-process API where they look for it, under the extension name
    ``jupyter_server_ydoc`` (:mod:`.collaboration`), and get its ``session`` and
    ``awareness`` events (:mod:`.events`).

    **Configuration of the embedded side**: the Django settings read ``YDJANGO_*`` environment
    variables when they are imported; the extension sets ``YDJANGO_NOTEBOOK_DIR`` to the
    server's root directory and ``YDJANGO_SAVE_DELAY``, ``YDJANGO_ROOM_UNLOAD_DELAY`` and
    ``YDJANGO_MAX_MESSAGE_SIZE`` from its options, whose defaults are those variables (so a
    variable set by the user holds unless the option is configured too), then sets Django up
    and applies its migrations in a thread once the server runs; requests wait for that.

    **Failures**: ``remote_url`` without a shared secret stops the server at start-up with a
    message saying what to set; an embedded side that fails to start leaves the API answering
    503 with the error (and websockets closing with 1011), logged with its traceback.
    """

    name = "jupyter_ydjango"
    app_name = "jupyter-ydjango"
    description = "Real-time collaboration for JupyterLab on Django Channels"
    load_other_extensions = True

    # Defaults of the options mirrored in YDJANGO_* variables come from those variables.
    save_delay = Float(
        config=True,
        help="Seconds without changes before a document is saved to its file "
             "(embedded Django side). Default: YDJANGO_SAVE_DELAY, else 1.",
    )
    room_unload_delay = Float(
        config=True,
        help="Seconds a document stays in memory after its last client left "
             "(embedded Django side). Default: YDJANGO_ROOM_UNLOAD_DELAY, else 60.",
    )
    max_message_size = Int(
        config=True,
        help="Largest websocket frame, in bytes, from a client (a larger one closes its "
             "connection) or from a remote Django side. Default: YDJANGO_MAX_MESSAGE_SIZE, "
             "else 64 MiB.",
    )
    send_budget = Int(
        config=True,
        help="Bytes that may wait to be written to one browser's room websocket; a browser "
             "that does not read and falls further behind is disconnected with 4503 (it "
             "reconnects and resyncs). Default: YDJANGO_SEND_BUDGET, else 32 MiB.",
    )
    reauthorize_interval = Float(
        60.0,
        config=True,
        help="Seconds between two checks that the user of an open room websocket still has "
             "access (Jupyter's identity provider and authorizer are asked again): a user "
             "logged out or whose access was revoked is disconnected within this time.",
    )
    remote_url = Unicode(
        "",
        config=True,
        help="URL of a remote Django Channels service (http(s)://host:port[/prefix]), e.g. "
             "`python -m jupyter_ydjango serve`. Empty (the default): run the Django side "
             "in this process.",
    )
    shared_secret = Unicode(
        config=True,
        help="Secret shared with the remote service (its YDJANGO_IDENTITY_SECRET), used to "
             "sign the identity of each user. Required with remote_url. Default: the "
             "YDJANGO_IDENTITY_SECRET environment variable.",
    )
    django_settings_module = Unicode(
        config=True,
        help="Django settings of the embedded Django side. Default: DJANGO_SETTINGS_MODULE "
             "if set, else jupyter_ydjango.settings.",
    )
    asgi_application = Unicode(
        "jupyter_ydjango.asgi:application",
        config=True,
        help="The embedded ASGI application, as 'module:attribute' (imported after Django "
             "is set up).",
    )
    request_timeout = Float(
        60.0,
        config=True,
        help="Seconds to wait for the Django side to answer an HTTP request or accept a "
             "websocket.",
    )
    freeze_startup_heap = Bool(
        True,
        config=True,
        help="Once the server has started, keep the objects it made while starting (some "
             "200,000, which live as long as it does) out of Python's garbage collector. "
             "Each full collection would otherwise walk them all and hold every websocket "
             "of the server for ~100 ms.",
    )
    startup_timeout = Float(
        120.0,
        config=True,
        help="Seconds a request waits for the embedded Django side to finish starting "
             "(database migrations) before it is answered with 503.",
    )

    @default("save_delay")
    def _default_save_delay(self) -> float:
        return float(os.environ.get("YDJANGO_SAVE_DELAY", 1.0))

    @default("room_unload_delay")
    def _default_room_unload_delay(self) -> float:
        return float(os.environ.get("YDJANGO_ROOM_UNLOAD_DELAY", 60.0))

    @default("max_message_size")
    def _default_max_message_size(self) -> int:
        return int(os.environ.get("YDJANGO_MAX_MESSAGE_SIZE", 64 * 1024 * 1024))

    @default("send_budget")
    def _default_send_budget(self) -> int:
        return int(os.environ.get("YDJANGO_SEND_BUDGET", 32 * 1024 * 1024))

    @default("shared_secret")
    def _default_shared_secret(self) -> str:
        return os.environ.get("YDJANGO_IDENTITY_SECRET", "")

    @default("django_settings_module")
    def _default_settings_module(self) -> str:
        return os.environ.get("DJANGO_SETTINGS_MODULE") or "jupyter_ydjango.settings"

    @validate("max_message_size")
    def _validate_max_message_size(self, proposal: dict[str, Any]) -> int:
        if proposal["value"] < 1024:
            raise ValueError("max_message_size must be at least 1024 bytes")
        return int(proposal["value"])

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend: Backend | None = None
        #: Open client websockets (closed at shutdown).
        self.sockets: set[RoomHandler] = set()
        self._ready = asyncio.Event()
        self._startup_error: str | None = None
        self._contents_changes: set[asyncio.Task[Any]] = set()
        #: jupyter-collaboration's events (set when loaded).
        self.events: CollaborationEvents | None = None

    # --- start-up ---------------------------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """Whether the Django side runs in this process."""
        return not self.remote_url

    def _link_jupyter_server_extension(self, serverapp: Any) -> None:
        """Link as any extension; then stand in for jupyter-collaboration's app, which other
        extensions look up by name as they load (see :mod:`.collaboration`)."""
        super()._link_jupyter_server_extension(serverapp)
        collaboration.install(self)

    def initialize_settings(self) -> None:
        """Check the configuration and make the backend (Django is set up here if embedded)."""
        self._check_conflicts()
        self.settings["jupyter_ydjango"] = self  # found there by the roles authorizer
        if isinstance(self.serverapp.authorizer, RolesAuthorizer) or isinstance(
                self.serverapp.identity_provider, GuestIdentityProvider):
            keep_token_from_others(self.serverapp.web_app.settings)
        self.events = CollaborationEvents(self.serverapp.event_logger, self.log)
        if self.embedded:
            try:
                self.backend = self._embedded_backend()
            except Exception as exc:
                # The handlers stay registered and answer 503 with this message, so that the
                # frontend fails visibly instead of with "not found".
                self._startup_error = f"the embedded Django side failed to start: {exc!r}"
                self.log.exception("jupyter_ydjango: %s", self._startup_error)
            else:
                self.events.connect_rooms()
        else:
            self.backend = self._remote_backend()
        self.serverapp.event_logger.add_listener(
            schema_id=CONTENTS_EVENTS, listener=self._on_contents_event
        )

    def initialize_handlers(self) -> None:
        """Register the collaboration API."""
        kwargs = {"extension": self}
        self.handlers.extend([
            (r"/api/collaboration/session/(.*)", SessionHandler, kwargs),
            (r"/api/collaboration/room/(.*)", RoomHandler, kwargs),
            (r"/api/ydjango/rooms/(.*)", RoomStatusHandler, kwargs),
            (r"/api/collaboration/timeline/(.*)", TimelineHandler, kwargs),
            (r"/api/ydjango/history/(.*)", HistoryAuthorsHandler, kwargs),
            (r"/api/collaboration/undo_redo/(.*)", UndoRedoHandler, kwargs),
            (r"/api/collaboration/fork/(.*)", ForkHandler, kwargs),
            (r"/api/ydjango/roles/(.*)", ManagementHandler, kwargs),
            (r"/api/ydjango/links/(.*)", LinksHandler, kwargs),
            (r"/ydjango/join/([^/]+)", JoinHandler, kwargs),
        ])

    def initialize(self) -> None:
        """Initialise as any extension; then, if another one claims our URLs, go first."""
        super().initialize()
        if self._conflicts:
            self._route_first()

    def _embedded_backend(self) -> Backend:
        from jupyter_ydjango.jupyter import embedded
        from jupyter_ydjango.jupyter.bridge import AsgiBackend

        root = getattr(self.serverapp.contents_manager, "root_dir", None) or self.serverapp.root_dir
        root = os.path.abspath(os.path.expanduser(root))
        given = os.environ.get("YDJANGO_NOTEBOOK_DIR")
        if given and os.path.abspath(given) != root:
            self.log.warning("YDJANGO_NOTEBOOK_DIR=%s is ignored: documents are served from "
                             "the Jupyter server's root directory %s", given, root)
        allow_hidden = bool(getattr(self.serverapp.contents_manager, "allow_hidden", False))
        values = {
            "YDJANGO_NOTEBOOK_DIR": root,
            "YDJANGO_ALLOW_HIDDEN": "1" if allow_hidden else "",
            "YDJANGO_SAVE_DELAY": repr(float(self.save_delay)),
            "YDJANGO_ROOM_UNLOAD_DELAY": repr(float(self.room_unload_delay)),
            "YDJANGO_MAX_MESSAGE_SIZE": str(self.max_message_size),
            "YDJANGO_SEND_BUDGET": str(self.send_budget),
        }
        if not os.environ.get("YDJANGO_DATA_DIR"):
            values["YDJANGO_DATA_DIR"] = os.path.join(jupyter_data_dir(), "ydjango")
        if self.shared_secret:
            values["YDJANGO_IDENTITY_SECRET"] = self.shared_secret
        embedded.set_environment(values, self.log)
        embedded.setup_django(self.django_settings_module)
        from jupyter_ydjango.store.contents import use_contents_manager

        # the server's manager as it is when used: an extension (jupytext) may replace it
        # while the extensions load
        use_contents_manager(lambda: self.serverapp.contents_manager)
        application = embedded.import_object(self.asgi_application)
        self.log.info("jupyter_ydjango: embedded Django side (%s), notebooks in %s",
                      self.django_settings_module, root)
        return AsgiBackend(application, log=self.log, request_timeout=self.request_timeout,
                           connect_timeout=self.request_timeout)

    def _remote_backend(self) -> Backend:
        from jupyter_ydjango.jupyter.proxy import ProxyBackend

        if not self.shared_secret:
            message = (
                "jupyter_ydjango: YDjango.remote_url is set but no shared secret is: set "
                "c.YDjango.shared_secret (or the YDJANGO_IDENTITY_SECRET environment "
                "variable) to the remote service's YDJANGO_IDENTITY_SECRET"
            )
            self.log.critical(message)
            # Without it no user could open a document; a half-working server is worse.
            raise SystemExit(message)
        try:
            backend = ProxyBackend(self.remote_url, self.shared_secret,
                                   max_message_size=self.max_message_size, log=self.log,
                                   request_timeout=self.request_timeout)
        except ValueError as exc:
            self.log.critical("jupyter_ydjango: %s", exc)
            raise SystemExit(str(exc)) from None
        self.log.info("jupyter_ydjango: remote Django side at %s", self.remote_url)
        return backend

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Apply the embedded database's migrations (in a thread), keep the start-up heap out
        of garbage collection, then accept requests."""
        if self.embedded and self._startup_error is None:
            from jupyter_ydjango.jupyter import embedded

            try:
                await asyncio.to_thread(embedded.migrate)
            except Exception as exc:
                self._startup_error = f"database migrations failed: {exc!r}"
                self.log.exception("jupyter_ydjango: %s", self._startup_error)
        if self.freeze_startup_heap:
            self.log.info("jupyter_ydjango: %s", heap.freeze_startup_heap())
        self._ready.set()

    async def get_backend(self) -> Backend:
        """The backend, once it is ready.

        :raises BackendError: (503) it is still starting after :attr:`startup_timeout`, or
            failed to start.
        """
        if not self._ready.is_set():
            try:
                await asyncio.wait_for(self._ready.wait(), self.startup_timeout)
            except asyncio.TimeoutError:
                raise BackendError(503, "the collaboration backend is still starting") from None
        if self._startup_error is not None or self.backend is None:
            raise BackendError(503, self._startup_error or "no collaboration backend")
        return self.backend

    # --- conflicts with jupyter-collaboration -------------------------------------------------

    @property
    def _conflicts(self) -> list[str]:
        enabled = self.serverapp.jpserver_extensions
        return [
            name for name in CONFLICTING_EXTENSIONS
            if enabled.get(name) and importlib.util.find_spec(name) is not None
        ]

    def _check_conflicts(self) -> None:
        conflicts = self._conflicts
        if conflicts:
            self.log.error(
                "jupyter_ydjango: the server extension%s %s (jupyter-collaboration) also "
                "serve%s /api/collaboration/*; jupyter_ydjango answers these URLs and the "
                "other backend gets no document traffic. To fix this, uninstall it "
                "(`pip uninstall jupyter-collaboration jupyter-server-ydoc`) or disable it "
                "(`jupyter server extension disable %s`).",
                "s" if len(conflicts) > 1 else "",
                " and ".join(conflicts),
                "" if len(conflicts) > 1 else "s",
                " ".join(conflicts),
            )

    def _route_first(self) -> None:
        """Move this extension's routes ahead of every other extension's."""
        ours = {SessionHandler, RoomHandler, RoomStatusHandler, TimelineHandler,
                UndoRedoHandler, ForkHandler, HistoryAuthorsHandler}
        rules = self.serverapp.web_app.default_router.rules
        for index, rule in enumerate(rules):
            targets = {getattr(r, "target", None) for r in getattr(rule.target, "rules", ())}
            if targets & ours:
                rules.insert(0, rules.pop(index))
                return

    # --- contents events ----------------------------------------------------------------------

    async def _on_contents_event(self, logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        action, path = data.get("action"), data.get("path")
        if action == "rename" and data.get("source_path") and path:
            await self._forward_contents_change(
                f"the rename of {data['source_path']} to {path}",
                "the document gets a new fileId",
                lambda backend: backend.rename(data["source_path"], path,
                                               identity=SERVER_IDENTITY))
        elif action == "delete" and path:
            await self._forward_contents_change(
                f"the deletion of {path}", "its room may save it again",
                lambda backend: backend.delete(path, identity=SERVER_IDENTITY))

    async def _forward_contents_change(
        self, what: str, consequence: str, call: Callable[[Backend], Awaitable[None]]
    ) -> None:
        # The listener runs as a task made when the event was emitted, before the client got
        # the change's answer: registering it now lets later session requests wait for it.
        task = asyncio.current_task()
        if task is not None:
            self._contents_changes.add(task)
            task.add_done_callback(self._contents_changes.discard)
        try:
            await call(await self.get_backend())
        except BackendError as exc:
            self.log.error("jupyter_ydjango: the backend did not record %s (%s): %s",
                           what, consequence, exc)
        except Exception:
            self.log.exception("jupyter_ydjango: error while recording %s", what)

    async def renames_recorded(self) -> None:
        """Wait until the renames and deletions reported so far reached the backend (so that
        a session request for a file's new path finds its ``fileId``, and one for a file made
        again where another was deleted gets a new one)."""
        pending = [task for task in self._contents_changes if task is not asyncio.current_task()]
        if pending:
            await asyncio.wait(pending, timeout=self.request_timeout)

    # --- shutdown -----------------------------------------------------------------------------

    async def stop_extension(self) -> None:
        """Close every client websocket, then let the Django side save and unload its rooms."""
        if self.events is not None:
            self.events.disconnect_rooms()
        for handler in list(self.sockets):
            handler.shutdown()
        self.sockets.clear()
        if self.backend is not None:
            await self.backend.stop()
        if self.embedded and self.backend is not None:
            from jupyter_ydjango.project.shutdown import unload_everything

            await unload_everything()


#: The extension application (``YDjango`` is also its configuration section).
YDjangoApp = YDjango
