"""The CRDT engine behind a room's document: pycrdt, or y-py for code written for the seed API.

A room never calls its document directly; it goes through an :class:`Engine`, which speaks
only bytes (state vectors and updates, Yjs' v1 encoding) so that the rest of the data path
does not care which library holds the document.

* :class:`PycrdtEngine` wraps a :class:`pycrdt.Doc`: the engine of every room this package
  makes. Client ids are kept as sent: 32 bits wide from yjs, 53 bits from pycrdt.
* :class:`YpyEngine` wraps a ``y_py.YDoc`` returned by a consumer's ``make_ydoc()`` (the
  optional ``[ypy]`` extra). y-py 0.6 reads client ids as 32-bit numbers, so a 53-bit id
  would be stored truncated and the room would diverge from its clients: such updates are
  refused with :class:`UnsupportedClientId` instead.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

import pycrdt

from jupyter_ydjango.protocol.messages import EMPTY_UPDATE, ProtocolError, read_var_uint

#: The widest client id y-py 0.6 can hold.
YPY_MAX_CLIENT_ID = (1 << 32) - 1


class UnsupportedClientId(ProtocolError):
    """An update carries a client id the room's engine cannot hold."""


class Engine(Protocol):
    """What a room needs of its document, in bytes."""

    #: The document object itself (what ``make_ydoc()`` returned).
    doc: Any

    def state_vector(self) -> bytes:
        """The document's state vector."""

    def diff(self, state_vector: bytes | None = None) -> bytes:
        """The update a peer at ``state_vector`` lacks (the whole document if ``None``)."""

    def apply_update(self, update: bytes) -> None:
        """Apply an update; :class:`ProtocolError` if it cannot be decoded or held."""

    def observe(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(update)`` after every transaction that changed the document."""


class PycrdtEngine:
    """A :class:`pycrdt.Doc` as a room's document."""

    def __init__(self, doc: pycrdt.Doc) -> None:
        self.doc = doc

    def state_vector(self) -> bytes:
        return self.doc.get_state()

    def diff(self, state_vector: bytes | None = None) -> bytes:
        try:
            return self.doc.get_update(state_vector)
        except Exception as exc:  # pycrdt raises ValueError or pyo3's PanicException
            raise ProtocolError(f"invalid state vector: {exc}") from None

    def apply_update(self, update: bytes) -> None:
        try:
            self.doc.apply_update(update)
        except Exception as exc:
            raise ProtocolError(f"invalid update: {exc}") from None

    def observe(self, callback: Callable[[bytes], None]) -> None:
        self.doc.observe(lambda event: callback(event.update))


class YpyEngine:
    """A ``y_py.YDoc`` as a room's document (seed API compatibility only).

    Updates whose structs carry a client id wider than 32 bits are refused, because y-py
    would store them under a truncated id. Delete sets are not inspected: a deletion of
    another client's items needs those items, which such a room never holds.
    """

    def __init__(self, doc: Any) -> None:
        import y_py

        self._y = y_py
        self.doc = doc

    def state_vector(self) -> bytes:
        return self._y.encode_state_vector(self.doc)

    def diff(self, state_vector: bytes | None = None) -> bytes:
        try:
            if state_vector is None:
                return self._y.encode_state_as_update(self.doc)
            return self._y.encode_state_as_update(self.doc, state_vector)
        except Exception as exc:
            raise ProtocolError(f"invalid state vector: {exc}") from None

    def apply_update(self, update: bytes) -> None:
        wide = [cid for cid in update_client_ids(update) if cid > YPY_MAX_CLIENT_ID]
        if wide:
            raise UnsupportedClientId(
                f"client id {wide[0]} is wider than 32 bits, which this room's y-py "
                "document cannot hold (make_ydoc() should return a pycrdt.Doc)"
            )
        try:
            self._y.apply_update(self.doc, update)
        except Exception as exc:
            raise ProtocolError(f"invalid update: {exc}") from None

    def observe(self, callback: Callable[[bytes], None]) -> None:
        self.doc.observe_after_transaction(lambda event: callback(event.get_update()))


def update_client_ids(update: bytes) -> list[int]:
    """The client ids of the structs an update carries (its delete set is not read).

    :raises ProtocolError: the update cannot be decoded.
    """
    if update == EMPTY_UPDATE:
        return []
    try:
        state = pycrdt.get_state(update)
    except Exception as exc:
        raise ProtocolError(f"invalid update: {exc}") from None
    return list(decode_state_vector(state))


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """A state vector as ``{client id: clock}``."""
    count, pos = read_var_uint(state_vector)
    clocks: dict[int, int] = {}
    for _ in range(count):
        client, pos = read_var_uint(state_vector, pos)
        clocks[client], pos = read_var_uint(state_vector, pos)
    return clocks


def update_held(update: bytes, state_vector: bytes) -> bool:
    """Whether a document whose state vector is ``state_vector`` holds all of ``update``.

    A document applies an update whose dependencies it lacks only in part: the rest (the
    structs after a missing one, deletions of items it does not have) waits in the engine,
    left out of every update it encodes, until the dependency arrives. ``update`` is held if
    none of its structs lie beyond the state vector and every range its delete set names
    lies below it.

    :raises ProtocolError: the update cannot be decoded.
    """
    try:
        beyond = pycrdt.get_update(update, state_vector)  # its structs beyond the vector
    except Exception as exc:
        raise ProtocolError(f"invalid update: {exc}") from None
    clients, pos = read_var_uint(beyond)
    if clients:
        return False
    clocks = decode_state_vector(state_vector)
    clients, pos = read_var_uint(beyond, pos)  # the delete set: per client, clock ranges
    for _ in range(clients):
        client, pos = read_var_uint(beyond, pos)
        ranges, pos = read_var_uint(beyond, pos)
        for _ in range(ranges):
            clock, pos = read_var_uint(beyond, pos)
            length, pos = read_var_uint(beyond, pos)
            if clock + length > clocks.get(client, 0):
                return False
    return True


def engine_for(doc: Any) -> Engine:
    """The engine of a document made by ``make_ydoc()``.

    :raises TypeError: ``doc`` is neither a :class:`pycrdt.Doc` nor a ``y_py.YDoc``.
    """
    if isinstance(doc, pycrdt.Doc):
        return PycrdtEngine(doc)
    # y_py.YDoc's __module__ is "builtins"; a YDoc exists only once y_py is imported
    y_py = sys.modules.get("y_py")
    if y_py is not None and isinstance(doc, y_py.YDoc):
        return YpyEngine(doc)
    raise TypeError(f"make_ydoc() must return a pycrdt.Doc (or a y_py.YDoc), not {doc!r}")
