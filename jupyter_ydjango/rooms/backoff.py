"""How long to wait before trying again: a pause that doubles after each failure, up to a cap.

Every retry loop of the package (the channel layer, the update log, a fork's copy, the
consumer's receive) waits with one of these.
"""

from __future__ import annotations


class Backoff:
    """Pauses of ``first`` seconds, doubled after each failure up to ``most``."""

    def __init__(self, first: float = 0.1, most: float = 5.0) -> None:
        self.first, self.most = first, most
        self.delay = first
        #: Failures since the last success.
        self.failures = 0

    def failed(self) -> float:
        """Count a failure; the pause to take before the next try."""
        self.failures += 1
        delay, self.delay = self.delay, min(self.delay * 2, self.most)
        return delay

    def succeeded(self) -> bool:
        """Start over; whether there were failures before this success."""
        recovered = self.failures > 0
        self.delay, self.failures = self.first, 0
        return recovered
