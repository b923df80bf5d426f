"""What one client may make a room hold or do, and the error for a client past it.

Every connection has a budget: bytes waiting to be sent to it, the size of its awareness
states and how many client ids it announces (the messages in one frame are the consumer's:
see :class:`~jupyter_ydjango.consumer.YjsConsumer`). A client past one is closed with the
code :class:`OverBudget` carries; the room and its other clients go on, and
``ydjango_budget_closes`` counts it.
"""

from __future__ import annotations

from dataclasses import dataclass

from jupyter_ydjango import metrics


@dataclass(frozen=True)
class Budgets:
    """The limits a room applies to each of its connections."""

    #: Bytes that may wait to be sent to a peer (see :class:`~.room.Peer`).
    send_bytes: int = 32 * 1024 * 1024
    #: Largest awareness state, in bytes of JSON.
    awareness_state: int = 256 * 1024
    #: Awareness client ids one connection may announce.
    awareness_clients: int = 8

    @classmethod
    def from_settings(cls) -> Budgets:
        """The budgets of the ``YDJANGO_SEND_BUDGET``, ``YDJANGO_MAX_AWARENESS_STATE`` and
        ``YDJANGO_MAX_AWARENESS_CLIENTS`` settings."""
        from jupyter_ydjango.conf import get_setting

        return cls(send_bytes=get_setting("YDJANGO_SEND_BUDGET"),
                   awareness_state=get_setting("YDJANGO_MAX_AWARENESS_STATE"),
                   awareness_clients=get_setting("YDJANGO_MAX_AWARENESS_CLIENTS"))


class OverBudget(Exception):
    """A client went past one of its budgets: close it with ``code``, saying ``reason``."""

    def __init__(self, code: int, reason: str, budget: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        #: Which budget (the label of the ``ydjango_budget_closes`` metric).
        self.budget = budget
        metrics.BUDGET_CLOSES.labels(budget).inc()
