"""Counters of the service, exposed in Prometheus' text format at ``/metrics``.

With ``serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` so that every
worker's numbers are added up, whichever worker answers the scrape.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "render"]

_MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

ROOMS = Gauge("ydjango_rooms_loaded", "Rooms loaded in memory", multiprocess_mode="livesum")
CONNECTIONS = Gauge("ydjango_connections", "Open room connections", multiprocess_mode="livesum")
UPDATES = Counter("ydjango_updates", "Document changes applied (from clients, other "
                  "processes or server code)")
SAVES = Counter("ydjango_saves", "Files written")
SAVE_FAILURES = Counter("ydjango_save_failures", "Saves that failed (invalid document, "
                        "I/O error)")
BUDGET_CLOSES = Counter("ydjango_budget_closes", "Connections closed for going past a budget, "
                        "by budget: frame (bytes), messages (per frame), send (bytes waiting), "
                        "awareness_state (bytes), awareness_clients, saves (requests waiting)",
                        ["budget"])
RATE_LIMITED = Counter("ydjango_rate_limited", "HTTP API requests answered 429: their user "
                       "was over YDJANGO_HTTP_RATE")
LOG_WRITE_FAILURES = Counter("ydjango_log_write_failures", "Failed writes of the update log "
                             "(retried)")


def render() -> bytes:
    """The metrics of this process, or of every worker, in Prometheus' text format."""
    if _MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
