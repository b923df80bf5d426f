"""A Jupyter server extension of the tests: another extension's view of the collaboration API.

It finds the collaboration app the way extensions written for jupyter-collaboration do
(``extension_manager.extension_apps["jupyter_server_ydoc"]``, as jupyter-server-nbmodel) and
records jupyter-collaboration's events, and lets the tests drive it over HTTP:

* ``GET /probe/lookup``: how the app was found;
* ``POST /probe/document`` with ``get_document``'s keyword arguments, and optionally
  ``"append": text`` (appended to the first cell's source, or to a text document): what it
  returned;
* ``GET /probe/events``: the events received so far;
* ``GET /probe/chats``: the chats jupyterlab-chat's chat manager holds (``{id: path}``).

Enable it with ``{"ServerApp": {"jpserver_extensions": {"collab_probe": true}}}`` and the
tests directory on ``PYTHONPATH``.
"""

from __future__ import annotations

import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

COLLABORATION = "jupyter_server_ydoc"
SCHEMAS = (
    "https://schema.jupyter.org/jupyter_collaboration/session/v1",
    "https://schema.jupyter.org/jupyter_collaboration/awareness/v1",
    "https://schema.jupyter.org/jupyter_collaboration/fork/v1",
)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "collab_probe"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    apps = serverapp.extension_manager.extension_apps.get(COLLABORATION, set())
    state: dict[str, Any] = {"app": next(iter(apps), None), "events": []}
    package = serverapp.extension_manager.extensions.get(COLLABORATION)
    state["lookup"] = {
        "found": state["app"] is not None,
        "enabled": bool(package and package.enabled),
        "disable_rtc": getattr(state["app"], "disable_rtc", None),
    }

    async def record(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
        state["events"].append({"schema": schema_id.rsplit("/", 2)[-2], **data})

    for schema_id in SCHEMAS:
        serverapp.event_logger.add_listener(schema_id=schema_id, listener=record)
    serverapp.web_app.add_handlers(".*$", [
        (serverapp.base_url + r"probe/(lookup|events|chats)", _ReadHandler, {"state": state}),
        (serverapp.base_url + r"probe/document", _DocumentHandler, {"state": state}),
    ])


class _ReadHandler(APIHandler):
    def initialize(self, state: dict[str, Any]) -> None:
        self.state = state

    @web.authenticated
    def get(self, what: str) -> None:
        if what == "chats":
            chats = self.settings.get("chats_by_id", {})
            self.finish(json.dumps({chat_id: chat.get_path() for chat_id, chat in chats.items()}))
            return
        answer = self.state[what]
        if what == "lookup":  # the server's settings, once every extension is loaded
            answer = {**answer, "settings_same":
                      self.settings.get(COLLABORATION) is self.state["app"]}
        self.finish(json.dumps(answer))


class _DocumentHandler(APIHandler):
    def initialize(self, state: dict[str, Any]) -> None:
        self.state = state

    @web.authenticated
    async def post(self) -> None:
        args = json.loads(self.request.body)
        append = args.pop("append", None)
        app = self.state["app"]
        try:
            document = await app.get_document(**args)
            again = await app.get_document(**args)
        except ValueError as exc:
            self.finish(json.dumps({"error": str(exc)}))
            return
        if document is None:
            self.finish(json.dumps({"document": None}))
            return
        if append is not None:
            if hasattr(document, "ycells"):
                source = document.ycells[0]["source"]
                source.insert(len(source), append)
            else:
                document.set(document.get() + append)
        content = document.get()
        self.finish(json.dumps({
            "document": type(document).__name__,
            "same": again is document,
            "content": content if isinstance(content, (str, dict)) else repr(content),
        }))
