"""Every websocket close code the package sends or reads, once.

Servers may only send 1000 and 3000-4999 (RFC 6455 7.4.2; daphne enforces it), so errors use
application codes modelled on HTTP statuses. y-websocket clients do not reconnect after a
44xx close, which is right for those: the same frame or the same request would come again.
A 45xx close is retryable: the client reconnects and resyncs.
"""

from __future__ import annotations

# --- RFC 6455 -----------------------------------------------------------------------------

#: Normal closure.
NORMAL = 1000
#: The endpoint goes away (server shutting down).
GOING_AWAY = 1001
#: jupyter-collaboration's "your session is from another server run: reload" code.
UNSUPPORTED = 1003
#: No close code was given (never sent on the wire).
NO_STATUS = 1005
#: The connection dropped without a close frame (never sent on the wire).
ABNORMAL = 1006
#: An unexpected condition on the server.
INTERNAL_ERROR = 1011
#: TLS failure (never sent on the wire).
TLS = 1015

#: Codes that must not appear in a close frame (RFC 6455 7.4.1).
RESERVED = frozenset({NO_STATUS, ABNORMAL, TLS})

# --- the frames of a connection -----------------------------------------------------------

#: A malformed frame (bad varUint, unknown type, length past the end, invalid update).
PROTOCOL_ERROR = 4400
#: A frame larger than the limit.
TOO_BIG = 4413
#: A text frame: the protocol is binary.
UNSUPPORTED_DATA = 4415
#: An update with a client id the room's document cannot hold (a y-py room and a 53-bit id):
#: the room's engine needs upgrading (HTTP's 426).
UNSUPPORTED_CLIENT_ID = 4426
#: A client over one of its budgets: more messages in a frame, awareness client ids on a
#: connection, or save requests waiting than a connection may have (HTTP's 429).
TOO_MANY = 4429
#: A peer that does not read its frames fast enough: more bytes wait for it than its send
#: budget (retryable: y-websocket reconnects and resyncs).
SLOW_PEER = 4503
#: The room is now served by another worker of ``serve --workers N`` (a worker started or
#: came back): the client reconnects, and reaches that worker (retryable; HTTP's 502).
ROOM_MOVED = 4502

# --- refused connections ------------------------------------------------------------------

#: A room of a document type no format serves (neither ours nor a jupyter_ydoc class): the
#: stock frontend reports a "bad request" for the file and does not retry. The same code as
#: :data:`PROTOCOL_ERROR`: both are a bad request.
UNKNOWN_TYPE = 4400
#: The document's file is larger than a room opens (``YDJANGO_MAX_FILE_SIZE``). The same
#: code as :data:`TOO_BIG`: both are too large.
FILE_TOO_LARGE = 4413
#: No authenticated user, or no identity.
UNAUTHORIZED = 4401
#: The document's path is outside the notebook root.
FORBIDDEN = 4403
#: The document's file does not exist (and there is no history to load), or no such room.
NOT_FOUND = 4404
#: The client's ``sessionId`` names another history of the document (the Jupyter side turns
#: it into jupyter-collaboration's close 1003 ``unknown_session``, reloadable).
STALE_SESSION = 4409
#: The file is not a document of the room's type (not JSON, not a notebook, an nbformat
#: version nbformat does not know, not UTF-8): what Jupyter refuses to open too. The close
#: reason says why, in a sentence for the people who tried to open it.
UNREADABLE = 4422
#: The file cannot be loaded (it cannot be read, the database fails...): retryable.
LOAD_FAILED = 4500
