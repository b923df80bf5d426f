"""The y-websocket wire format, as small pure functions.

A websocket frame holds one or more messages. Each message is ``varUint(type)``
followed by a payload whose shape depends on the type (see ``y-protocols``):

* ``SYNC`` (0): ``varUint(subtype)`` + ``varByteArray``; subtype 0 is step 1 (a state
  vector), 1 is step 2 (an update answering step 1), 2 is an update.
* ``AWARENESS`` (1): ``varByteArray`` of an awareness update: ``varUint(count)`` then per
  client ``varUint(clientID)``, ``varUint(clock)``, ``varString(JSON state)``.
* ``AUTH``/``RAW`` (2): from the server, y-protocols' auth message (``varUint(0)`` +
  ``varString(reason)`` = permission denied); Jupyter also uses type 2 for its own
  messages (``RAW``). Its length is not self-delimited, so it runs to the end of the frame.
* ``QUERY_AWARENESS`` (3): no payload.

Nothing here does I/O. Malformed input raises :class:`ProtocolError`.

Messages are built with pycrdt's own encoders where pycrdt has public ones
(:func:`create_update_message`, :func:`create_awareness_message`: the same bytes). Decoding
stays here: pycrdt's ``Decoder`` reads a length that runs past the end of a frame as a shorter
message, fails with ``IndexError`` on a truncated varUint, accepts varUints wider than
JavaScript can hold, and its ``write_var_string`` counts characters instead of UTF-8 bytes;
each of these is a test in ``tests/unit/protocol/test_yutils_pycrdt.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import pycrdt

#: lib0 refuses varUints wider than 53 bits (JavaScript's safe integers); so do we.
MAX_VAR_UINT = (1 << 53) - 1

Buffer = bytes | bytearray | memoryview


class ProtocolError(ValueError):
    """A frame does not follow the y-websocket protocol."""


class YMessageType(IntEnum):
    """The first varUint of every message."""

    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    RAW = 2
    QUERY_AWARENESS = 3


class YSyncMessageType(IntEnum):
    """The second varUint of a SYNC message."""

    SYNC_STEP1 = 0
    SYNC_STEP2 = 1
    SYNC_UPDATE = 2


#: y-protocols/auth.js: the only auth message type.
PERMISSION_DENIED = 0

#: An update that changes nothing (no structs, empty delete set).
EMPTY_UPDATE = b"\x00\x00"


# --- primitives -----------------------------------------------------------------------


def write_var_uint(num: int) -> bytes:
    """Encode a non-negative integer as a lib0 varUint (7 bits per byte, little end first)."""
    if num < 0 or num > MAX_VAR_UINT:
        raise ProtocolError(f"varUint out of range: {num}")
    out = bytearray()
    while num > 0x7F:
        out.append(0x80 | (num & 0x7F))
        num >>= 7
    out.append(num)
    return bytes(out)


def read_var_uint(data: Buffer, pos: int = 0) -> tuple[int, int]:
    """Decode a varUint at ``pos``; return ``(value, position after it)``."""
    num = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise ProtocolError("truncated varUint")
        byte = data[pos]
        pos += 1
        num |= (byte & 0x7F) << shift
        if num > MAX_VAR_UINT:
            raise ProtocolError("varUint wider than 53 bits")
        if byte < 0x80:
            return num, pos
        shift += 7


def write_var_byte_array(data: Buffer) -> bytes:
    """Encode bytes prefixed by their length as a varUint."""
    return write_var_uint(len(data)) + bytes(data)


def read_var_byte_array(data: Buffer, pos: int = 0) -> tuple[bytes, int]:
    """Decode a length-prefixed byte array; return ``(bytes, position after it)``."""
    length, pos = read_var_uint(data, pos)
    end = pos + length
    if end > len(data):
        raise ProtocolError(
            f"declared length {length} runs past the end of the frame "
            f"({len(data) - pos} bytes left)"
        )
    return bytes(data[pos:end]), end


def write_var_string(text: str) -> bytes:
    """Encode a string as a varByteArray of its UTF-8 bytes.

    Lone surrogates become U+FFFD, as lib0's ``TextEncoder`` writes them.
    """
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        data = (text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
                .encode("utf-8"))
    return write_var_byte_array(data)


def read_var_string(data: Buffer, pos: int = 0) -> tuple[str, int]:
    """Decode a varString; return ``(text, position after it)``."""
    raw, pos = read_var_byte_array(data, pos)
    try:
        return raw.decode("utf-8"), pos
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"varString is not UTF-8: {exc}") from None


# --- messages -------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One decoded message of a frame.

    ``sync_type`` is set for SYNC messages only. ``payload`` is the state vector or
    update for SYNC, the awareness update for AWARENESS, the raw remainder of the frame
    for AUTH/RAW and empty for QUERY_AWARENESS.
    """

    type: YMessageType
    payload: bytes = b""
    sync_type: YSyncMessageType | None = None


def create_sync_step1_message(state_vector: bytes) -> bytes:
    """SYNC step 1: "here is my state vector, send me what I lack"."""
    return b"\x00\x00" + write_var_byte_array(state_vector)


def create_sync_step2_message(update: bytes) -> bytes:
    """SYNC step 2: the answer to a step 1."""
    return b"\x00\x01" + write_var_byte_array(update)


def create_update_message(update: bytes) -> bytes:
    """SYNC update: a document change to broadcast."""
    return pycrdt.create_update_message(update)


def create_awareness_message(awareness_update: bytes) -> bytes:
    """AWARENESS: wrap an encoded awareness update."""
    return pycrdt.create_awareness_message(awareness_update)


def create_query_awareness_message() -> bytes:
    """QUERY_AWARENESS: ask the peer for all awareness states it knows."""
    return b"\x03"


def create_permission_denied_message(reason: str) -> bytes:
    """AUTH permission denied, as y-protocols' ``writePermissionDenied`` writes it."""
    return b"\x02" + write_var_uint(PERMISSION_DENIED) + write_var_string(reason)


def create_raw_message(payload: bytes) -> bytes:
    """RAW (type 2) with an arbitrary payload running to the end of the frame."""
    return b"\x02" + payload


def create_raw_json_message(message: Mapping[str, Any]) -> bytes:
    """RAW carrying ``varString(JSON)``, as jupyter-collaboration's server answers a save:
    ``{"type": "save", "responseTo": id, "status": "success" | "skipped" | "failed"}``."""
    return create_raw_message(write_var_string(json.dumps(message)))


def read_raw_request(payload: Buffer) -> tuple[str, int | None]:
    """A client's RAW request ``varString(action)`` [+ ``varUint(id)``]: ``(action, id)``.

    JupyterLab sends ``"save"`` with a request id; the id is ``None`` when absent.

    :raises ProtocolError: the payload does not start with a string.
    """
    action, pos = read_var_string(payload)
    request_id = read_var_uint(payload, pos)[0] if pos < len(payload) else None
    return action, request_id


def _read_header(data: Buffer, pos: int) -> tuple[YMessageType, YSyncMessageType | None, int]:
    """The type (and, for SYNC, the sync type) of the message starting at ``pos``, and the
    position after them."""
    code, pos = read_var_uint(data, pos)
    try:
        kind = YMessageType(code)
    except ValueError:
        raise ProtocolError(f"unknown message type {code}") from None
    if kind is not YMessageType.SYNC:
        return kind, None, pos
    sub, pos = read_var_uint(data, pos)
    try:
        return kind, YSyncMessageType(sub), pos
    except ValueError:
        raise ProtocolError(f"unknown sync message type {sub}") from None


def _message_end(data: Buffer, pos: int) -> int:
    """Where the message starting at ``pos`` ends, without copying its payload."""
    kind, _, pos = _read_header(data, pos)
    if kind in (YMessageType.SYNC, YMessageType.AWARENESS):
        length, pos = read_var_uint(data, pos)
        if pos + length > len(data):
            raise ProtocolError(
                f"declared length {length} runs past the end of the frame "
                f"({len(data) - pos} bytes left)"
            )
        return pos + length
    if kind is YMessageType.QUERY_AWARENESS:
        return pos
    return len(data)


def read_message(data: Buffer, pos: int = 0) -> tuple[Message, int]:
    """Decode the message starting at ``pos``; return it and the position after it."""
    kind, sync_type, pos = _read_header(data, pos)
    if kind in (YMessageType.SYNC, YMessageType.AWARENESS):
        payload, pos = read_var_byte_array(data, pos)
        return Message(kind, payload, sync_type), pos
    if kind is YMessageType.QUERY_AWARENESS:
        return Message(kind), pos
    return Message(kind, bytes(data[pos:])), len(data)


class TooManyMessages(ProtocolError):
    """A frame holds more messages than the receiver takes in one frame."""


def count_messages(frame: Buffer, limit: int | None = None) -> int:
    """Check the framing of a whole frame and count its messages, copying nothing.

    The scan stops at the first message past ``limit`` (:class:`TooManyMessages`), so that
    checking a frame costs at most ``limit`` messages whatever its size. An empty frame is
    a protocol error.
    """
    if len(frame) == 0:
        raise ProtocolError("empty frame")
    count = 0
    pos = 0
    while pos < len(frame):
        if limit is not None and count == limit:
            raise TooManyMessages(f"more than {limit} messages in one frame")
        pos = _message_end(frame, pos)
        count += 1
    return count


def iter_messages(frame: Buffer) -> Iterator[Message]:
    """Decode the messages of a frame one at a time, each when it is asked for (a frame
    checked by :func:`count_messages` first decodes without error)."""
    pos = 0
    while pos < len(frame):
        message, pos = read_message(frame, pos)
        yield message


def decode_messages(frame: Buffer) -> list[Message]:
    """Decode every message of a frame. An empty frame is a protocol error."""
    count_messages(frame)
    return list(iter_messages(frame))


def update_has_structs(update: Buffer) -> bool:
    """Whether a (v1) update inserts anything: its first varUint counts the clients whose
    new items it carries; an update without any holds at most a delete set."""
    return len(update) > 0 and update[0] != 0


def read_permission_denied(payload: bytes) -> str:
    """Return the reason of an AUTH payload (the part after the type byte)."""
    kind, pos = read_var_uint(payload)
    if kind != PERMISSION_DENIED:
        raise ProtocolError(f"unknown auth message type {kind}")
    reason, _ = read_var_string(payload, pos)
    return reason


# --- awareness ------------------------------------------------------------------------


class AwarenessEntry(NamedTuple):
    """One client's entry in an awareness update; ``state`` is JSON text, ``"null"`` = gone."""

    client_id: int
    clock: int
    state: str

    @property
    def removed(self) -> bool:
        """Whether this entry announces that the client left."""
        return self.state == "null"

    def parsed_state(self) -> Any:
        """The state as a Python object (``None`` when removed)."""
        return json.loads(self.state)


def encode_awareness_update(entries: Iterable[AwarenessEntry]) -> bytes:
    """Encode awareness entries the way y-protocols' ``encodeAwarenessUpdate`` does."""
    entries = list(entries)
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        parts.append(write_var_uint(entry.client_id))
        parts.append(write_var_uint(entry.clock))
        parts.append(write_var_string(entry.state))
    return b"".join(parts)


def _reject_json_constant(name: str) -> Any:
    # Python's json accepts NaN/Infinity/-Infinity; JSON.parse (and so every JS peer) does not.
    raise ValueError(f"{name} is not JSON")


class StateTooLarge(ProtocolError):
    """An awareness state is larger than the receiver takes."""


def decode_awareness_update(data: Buffer, max_state: int | None = None) -> list[AwarenessEntry]:
    """Decode an awareness update; every state must be valid JSON.

    With ``max_state``, a state of more bytes raises :class:`StateTooLarge` before it is
    parsed.
    """
    count, pos = read_var_uint(data)
    entries = []
    for _ in range(count):
        client_id, pos = read_var_uint(data, pos)
        clock, pos = read_var_uint(data, pos)
        if max_state is not None:
            length, _ = read_var_uint(data, pos)
            if length > max_state:
                raise StateTooLarge(f"awareness state of client {client_id} has {length} "
                                    f"bytes > {max_state}")
        state, pos = read_var_string(data, pos)
        try:
            json.loads(state, parse_constant=_reject_json_constant)
        except (ValueError, RecursionError):  # RecursionError: nested too deep for Python
            raise ProtocolError(f"awareness state of client {client_id} is not JSON") from None
        entries.append(AwarenessEntry(client_id, clock, state))
    if pos != len(data):
        raise ProtocolError(f"{len(data) - pos} trailing bytes after awareness update")
    return entries
