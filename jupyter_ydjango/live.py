"""Live documents for server-side code, where deployments import them: see
:mod:`jupyter_ydjango.documents.live`."""

from jupyter_ydjango.documents.live import (
    RUNNING_CHECK_INTERVAL,
    RUNNING_HOLD_LIMIT,
    current_state,
    document_room,
    jupyter_document,
    keep_loaded_while_running,
    live_room,
    room_id_of,
)

__all__ = [
    "RUNNING_CHECK_INTERVAL",
    "RUNNING_HOLD_LIMIT",
    "current_state",
    "document_room",
    "jupyter_document",
    "keep_loaded_while_running",
    "live_room",
    "room_id_of",
]
