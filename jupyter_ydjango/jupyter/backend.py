"""What the Jupyter handlers call: the Django side, in-process or remote, behind one interface.

A :class:`Backend` answers HTTP requests and opens websocket connections on the Django side,
on behalf of a user the Jupyter server has already authenticated and authorized (an
:class:`~jupyter_ydjango.api.identity.Identity`). Two implementations:

* :class:`~jupyter_ydjango.jupyter.bridge.AsgiBackend` calls the Django Channels ASGI
  application in-process, on the Jupyter server's event loop (the embedded default);
* :class:`~jupyter_ydjango.jupyter.proxy.ProxyBackend` forwards to a remote Django Channels
  service over HTTP and websockets, with a signed identity header.

Paths given to a backend are the Django side's, still percent-encoded as the client sent
them, with the Jupyter ``base_url`` already stripped (``/api/collaboration/session/a%20b.ipynb``);
queries are raw query strings.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.protocol import close_codes

#: The body of a backend error, as Jupyter's API handlers format theirs.
ERROR_CONTENT_TYPE = "application/json"

#: Longest close reason in bytes (a close frame's payload is at most 125 bytes).
MAX_REASON_BYTES = 123


class BackendError(Exception):
    """The Django side could not be reached or did not answer in time."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        #: The HTTP status the Jupyter handler answers with (502, 503, 504).
        self.status = status


@dataclass
class HttpResponse:
    """The Django side's answer to an HTTP request."""

    status: int
    body: bytes
    content_type: str | None = None

    def json(self) -> object:
        """The body parsed as JSON."""
        return json.loads(self.body)


Frame = bytes | str


class RoomConnection(abc.ABC):
    """One websocket connection to the Django side, opened by :meth:`Backend.connect`.

    After ``connect`` returns, :attr:`accepted` tells whether the Django side accepted it; if
    not, :attr:`close_code` and :attr:`close_reason` say why and :meth:`receive` returns
    ``None``.
    """

    #: Whether the Django side accepted the connection.
    accepted: bool = False
    #: The Django side's close code once it closed the connection (``None`` while open).
    close_code: int | None = None
    #: The Django side's close reason.
    close_reason: str = ""

    @abc.abstractmethod
    async def send(self, data: Frame) -> None:
        """Send a frame to the Django side.

        Waits while the Django side is behind (backpressure); returns at once, dropping the
        frame, once the connection is closed.
        """

    @abc.abstractmethod
    async def receive(self) -> Frame | None:
        """The next frame from the Django side, or ``None`` once it closed the connection."""

    @abc.abstractmethod
    def close(self, code: int = close_codes.NORMAL) -> None:
        """The client went away with ``code``: close the connection to the Django side.

        Frames already sent are still delivered before the close. Safe to call twice.
        """


class Backend(abc.ABC):
    """The Django side, as the Jupyter handlers see it."""

    @abc.abstractmethod
    async def request(
        self,
        method: str,
        path: str,
        *,
        identity: Identity,
        query: str = "",
        body: bytes = b"",
        content_type: str | None = None,
    ) -> HttpResponse:
        """Make an HTTP request on behalf of ``identity``.

        :raises BackendError: the Django side is unreachable or too slow.
        """

    @abc.abstractmethod
    async def connect(self, path: str, *, identity: Identity, query: str = "") -> RoomConnection:
        """Open a websocket connection on behalf of ``identity``.

        Returns once the Django side accepted or refused it (see
        :attr:`RoomConnection.accepted`); never raises for a refusal or an unreachable
        Django side (the connection is then refused with a close code).
        """

    async def rename(self, old_path: str, new_path: str, *, identity: Identity) -> None:
        """Tell the Django side that a file was renamed (so that it keeps its ``fileId``).

        :raises BackendError: the Django side did not confirm the rename.
        """
        body = json.dumps({"old_path": old_path, "new_path": new_path}).encode()
        response = await self.request("POST", "/api/ydjango/rename", identity=identity,
                                      body=body, content_type="application/json")
        if response.status >= 300:
            raise BackendError(response.status, f"rename refused with {response.status}: "
                               f"{response.body[:200].decode(errors='replace')}")

    async def delete(self, path: str, *, identity: Identity) -> None:
        """Tell the Django side that a file (or a directory) was deleted (so that its rooms
        stop saving it, and a new file there starts a new history).

        :raises BackendError: the Django side did not confirm the deletion.
        """
        body = json.dumps({"path": path}).encode()
        response = await self.request("POST", "/api/ydjango/delete", identity=identity,
                                      body=body, content_type="application/json")
        if response.status >= 300:
            raise BackendError(response.status, f"delete refused with {response.status}: "
                               f"{response.body[:200].decode(errors='replace')}")

    @abc.abstractmethod
    async def stop(self) -> None:
        """Close every connection (server shutdown) and release resources."""


def client_close(code: int | None, reason: str, session_id: str) -> tuple[int, str]:
    """The close code and reason for the browser, given the Django side's.

    ``4409`` (stale or unknown ``sessionId``) becomes ``1003`` with the JSON reason the stock
    frontend turns into its "reload" dialog; ``4422`` (a file Jupyter would not open either)
    becomes ``1003`` with the JSON reason it shows in its "Document error" dialog (the Django
    side's reason, a short sentence); a missing or abnormal close becomes ``1011``
    (retryable); other codes pass through. The reason is cut to fit a close frame.
    """
    if code == close_codes.STALE_SESSION:
        return close_codes.UNSUPPORTED, _session_reason(session_id)
    if code == close_codes.UNREADABLE:
        return close_codes.UNSUPPORTED, _initialization_error(reason)
    if code is None or code in close_codes.RESERVED or not (1000 <= code <= 4999):
        lost = reason or "connection to the backend lost"
        return close_codes.INTERNAL_ERROR, truncate_reason(lost)
    return code, truncate_reason(reason)


def _session_reason(session_id: str) -> str:
    def render(sid: str) -> str:
        return json.dumps({"reason": "unknown_session", "sessionId": sid, "reloadable": True},
                          separators=(",", ":"))

    text = render(session_id)
    if len(text) > MAX_REASON_BYTES:  # json.dumps output is ASCII: chars == bytes
        # An id this long is not one of ours; cut it so that the reason stays valid JSON.
        session_id = session_id[:40]
        while len(render(session_id)) > MAX_REASON_BYTES:
            session_id = session_id[:-1]
        text = render(session_id)
    return text


def _initialization_error(reason: str) -> str:
    """jupyter-collaboration's close reason for a document that cannot be opened."""
    def render(text: str) -> str:
        return json.dumps({"reason": "initialization_error", "reloadable": False,
                           "errorReason": text}, separators=(",", ":"), ensure_ascii=False)

    text = reason or "This file cannot be opened."
    while len(render(text).encode()) > MAX_REASON_BYTES:
        text = text[:-2] + "…"
    return render(text)


def truncate_reason(reason: str) -> str:
    """``reason`` cut to at most :data:`MAX_REASON_BYTES` bytes of UTF-8."""
    data = reason.encode()
    if len(data) <= MAX_REASON_BYTES:
        return reason
    return data[:MAX_REASON_BYTES].decode(errors="ignore")
