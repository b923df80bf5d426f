"""What the seed example's consumers record, for the tests to observe (through ``/observed``).

Shared by the y-py example (:mod:`.consumers`) and its pycrdt twin (:mod:`.consumers_pycrdt`);
the tests give the two routes different room names.
"""

from __future__ import annotations

#: room name -> how many times ``DocConsumer.make_ydoc`` ran for it.
MADE: dict[str, int] = {}
#: ``(room name, update)`` for every transaction the example's observer saw.
OBSERVED: list[tuple[str, bytes]] = []
