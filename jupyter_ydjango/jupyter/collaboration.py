"""jupyter-collaboration's in-process API, for the server extensions written against it.

Extensions such as jupyter-server-nbmodel (server-side execution) and jupyterlab-chat look
for the collaboration extension app by its extension name, ``jupyter_server_ydoc``:

* ``serverapp.extension_manager.extension_apps["jupyter_server_ydoc"]`` (the app, to call its
  ``get_document``), and ``extension_manager.extensions["jupyter_server_ydoc"].enabled``
  (jupyterlab-chat decides from it whether chats are collaborative documents);
* ``serverapp.web_app.settings["jupyter_server_ydoc"]`` (the same app, as every extension app
  is in the server's settings).

:func:`install` registers a :class:`CollaborationAPI` under that name, without
jupyter-collaboration being installed. Its :meth:`~CollaborationAPI.get_document` has
jupyter-collaboration's signature and returns the jupyter_ydoc document bound to the live
room (:mod:`jupyter_ydjango.documents.live`): with the embedded Django side, the rooms are on the
Jupyter server's event loop, so an extension's edits go straight into the room. With a remote
Django side the rooms are in another process: ``get_document`` returns ``None`` (as
jupyter-collaboration does for a room that does not exist), and extensions fall back to what
they do without a collaborative document.

Where jupyter-collaboration itself is installed and enabled, its own app keeps the name.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal

from jupyter_ydjango.jupyter.backend import BackendError

if TYPE_CHECKING:
    from jupyter_ydjango.jupyter.app import YDjango

#: The extension name (and settings key) extensions look the collaboration app up by.
COLLABORATION_NAME = "jupyter_server_ydoc"

_ARGUMENTS_ERROR = (
    "You need to provide either a ``room_id`` or the ``path``, the ``content_type`` and the "
    "``file_format``."
)


class CollaborationAPI:
    """What extensions use of jupyter-collaboration's ``YDocExtension`` app."""

    #: The extension app name.
    name = COLLABORATION_NAME
    #: jupyterlab-chat reads it: collaboration is on.
    disable_rtc = False

    def __init__(self, extension: YDjango) -> None:
        self._extension = extension
        self.log: logging.Logger | Any = extension.log

    async def get_document(
        self,
        *,
        path: str | None = None,
        content_type: str | None = None,
        file_format: Literal["json", "text"] | str | None = None,
        room_id: str | None = None,
        copy: bool = True,
        create: bool = False,
    ) -> Any:
        """The jupyter_ydoc document of a room, or ``None``.

        Give either ``room_id`` (``{format}:{type}:{fileId}``) or ``path`` (relative to the
        server's root), ``content_type`` (``"notebook"``, ``"file"``, ``"chat"``...) and
        ``file_format`` (``"json"``, ``"text"``). With ``copy=False`` the document is the live
        room's (the same object for as long as the room is loaded): its changes reach every
        client and the file. With ``copy=True`` (the default) it is a copy, whose changes go
        nowhere. ``None`` when the room is not loaded (unless ``create``: the room is then
        loaded, and stays loaded for the room unload delay or while clients are connected),
        or when the Django side is remote. A live notebook stays loaded while one of its
        cells is running (see :func:`~jupyter_ydjango.documents.live.keep_loaded_while_running`).

        :raises ValueError: neither or both ways of naming the room are given.
        """
        if room_id is None:
            if path is None or content_type is None or file_format is None:
                raise ValueError(_ARGUMENTS_ERROR)
        elif path is not None or content_type is not None or file_format is not None:
            raise ValueError(_ARGUMENTS_ERROR)
        if not self._extension.embedded:
            return None
        try:
            await self._extension.get_backend()  # the Django side is set up
        except BackendError as exc:
            self.log.warning("jupyter_ydjango: get_document: %s", exc)
            return None
        from jupyter_ydjango.documents import live

        if room_id is None:
            room_id = await live.room_id_of(str(path), str(file_format), str(content_type),
                                            create=create)
            if room_id is None:
                return None
        room = await live.live_room(room_id, load=create)
        if room is None:
            return None
        document = live.jupyter_document(room)
        if not copy:
            # a cell executed by the server writes its outputs after the last client may
            # have left: the room stays loaded while a cell runs
            live.keep_loaded_while_running(room)
            return document
        import pycrdt

        fork = pycrdt.Doc()
        fork.apply_update(room.doc.get_update())
        return type(document)(fork)

    def current_activity(self) -> None:
        """Activity the server waits for before an idle shutdown: the rooms' clients are the
        server's own websockets already."""

    async def stop_extension(self) -> None:
        """Nothing to stop: the rooms belong to the jupyter_ydjango extension."""


class _Point:
    """The one extension point of :class:`_Package`."""

    def __init__(self, app: CollaborationAPI) -> None:
        self.app = app


class _Package:
    """An entry of ``extension_manager.extensions``: loading it puts the app in the server's
    settings, where and when jupyter-collaboration's extension would."""

    enabled = True
    version = ""

    def __init__(self, app: CollaborationAPI) -> None:
        self.name = app.name
        self.app = app
        self.extension_points = {app.name: _Point(app)}

    def link_all_points(self, serverapp: Any) -> None:
        """Nothing to link."""

    def load_all_points(self, serverapp: Any) -> list[Any]:
        """Put the app in the server's settings."""
        serverapp.web_app.settings[self.name] = self.app
        return [self.app]

    async def start_all_points(self, serverapp: Any) -> None:
        """Nothing to start."""


def install(extension: YDjango) -> None:
    """Register a :class:`CollaborationAPI` as the ``jupyter_server_ydoc`` extension of the
    extension's server, unless jupyter-collaboration's own is enabled.

    Call it when the extension is linked: before any extension is loaded (jupyter-server-nbmodel
    looks it up as it loads, before this extension, whose name sorts after it).
    """
    manager = extension.serverapp.extension_manager
    existing = manager.extensions.get(COLLABORATION_NAME)
    if existing is not None and existing.enabled:
        extension.log.warning(
            "jupyter_ydjango: jupyter-collaboration's %s extension answers server-side "
            "extensions (get_document), and sees none of jupyter_ydjango's rooms",
            COLLABORATION_NAME)
        return
    manager.extensions[COLLABORATION_NAME] = _Package(CollaborationAPI(extension))
