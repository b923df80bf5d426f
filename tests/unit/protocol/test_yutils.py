"""``jupyter_ydjango.protocol.messages`` against the real npm packages, and on malformed input.

The first half runs ``tests/support/js/frames.mjs`` once (yjs, y-protocols, lib0 and y-websocket
build reference frames) and checks byte for byte that yutils writes the same bytes and
reads node's bytes back. The second half needs no node: every kind of malformed input
must raise :class:`ProtocolError`, never ``IndexError``/``UnicodeDecodeError``/...
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from jupyter_ydjango.protocol.messages import (
    EMPTY_UPDATE,
    MAX_VAR_UINT,
    PERMISSION_DENIED,
    AwarenessEntry,
    Message,
    ProtocolError,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_permission_denied_message,
    create_query_awareness_message,
    create_raw_message,
    create_sync_step1_message,
    create_sync_step2_message,
    create_update_message,
    decode_awareness_update,
    decode_messages,
    encode_awareness_update,
    read_message,
    read_permission_denied,
    read_var_byte_array,
    read_var_string,
    read_var_uint,
    write_var_byte_array,
    write_var_string,
    write_var_uint,
)

JS_DIR = Path(__file__).parents[2] / "support" / "js"
FRAMES_SCRIPT = JS_DIR / "frames.mjs"
NPM_PACKAGES = ("yjs", "y-protocols", "lib0", "y-websocket")


def unhex(text: str) -> bytes:
    return bytes.fromhex(text)


def decode_state_vector(sv: bytes) -> dict[int, int]:
    """A state vector (``varUint(n)`` then ``n`` pairs of varUints) as ``{client: clock}``."""
    count, pos = read_var_uint(sv)
    result = {}
    for _ in range(count):
        client, pos = read_var_uint(sv, pos)
        clock, pos = read_var_uint(sv, pos)
        result[client] = clock
    assert pos == len(sv)
    return result


def doc_content(doc: pycrdt.Doc) -> tuple[str, Any]:
    return str(doc.get("t", type=pycrdt.Text)), json.loads(str(doc.get("m", type=pycrdt.Map)))


# --- the node reference values ----------------------------------------------------------


@pytest.fixture(scope="module")
def js(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The JSON object printed by ``node tests/support/js/frames.mjs`` (run once per module)."""
    # tests/conftest.py installs the npm packages (and skips without node/npm); should
    # that fixture be missing, fall back to the checks below.
    with contextlib.suppress(pytest.FixtureLookupError):
        request.getfixturevalue("node_modules")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: cannot build reference frames with yjs")
    missing = [
        pkg for pkg in NPM_PACKAGES if not (JS_DIR / "node_modules" / pkg / "package.json").exists()
    ]
    if missing:
        pytest.skip(f"tests/support/js/node_modules lacks {', '.join(missing)} "
                    "(run `npm ci` in tests/support/js)")
    proc = subprocess.run(
        [node, str(FRAMES_SCRIPT)],
        cwd=JS_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"{FRAMES_SCRIPT.name} exited with {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout)


@pytest.mark.node
class TestAgainstNode:
    """yutils writes what y-websocket/y-protocols/lib0 write, and reads what they write."""

    def test_package_versions(self, js: dict[str, Any]) -> None:
        pinned = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
        for name in NPM_PACKAGES:
            assert js["versions"][name] == pinned[name], name

    def test_constants(self, js: dict[str, Any]) -> None:
        c = js["constants"]
        assert c["messageSync"] == YMessageType.SYNC
        assert c["messageAwareness"] == YMessageType.AWARENESS
        assert c["messageAuth"] == YMessageType.AUTH
        assert c["messageQueryAwareness"] == YMessageType.QUERY_AWARENESS
        assert c["messageYjsSyncStep1"] == YSyncMessageType.SYNC_STEP1
        assert c["messageYjsSyncStep2"] == YSyncMessageType.SYNC_STEP2
        assert c["messageYjsUpdate"] == YSyncMessageType.SYNC_UPDATE
        assert c["messagePermissionDenied"] == PERMISSION_DENIED

    def test_var_uint(self, js: dict[str, Any]) -> None:
        assert len(js["var_uint"]) > 10
        for case in js["var_uint"]:
            value, data = int(case["value"]), unhex(case["hex"])
            assert int(case["decoded"]) == value
            assert write_var_uint(value) == data, value
            assert read_var_uint(data) == (value, len(data)), value
            # reading from an offset, with something after it
            assert read_var_uint(b"\xff\x01" + data + b"\x05", 2) == (value, 2 + len(data))

    def test_var_string(self, js: dict[str, Any]) -> None:
        for case in js["var_string"]:
            value, data = case["value"], unhex(case["hex"])
            assert case["decoded"] == value
            assert write_var_string(value) == data, value[:20]
            assert read_var_string(data) == (value, len(data)), value[:20]
            assert read_var_string(memoryview(b"\x00" + data), 1) == (value, 1 + len(data))

    def test_var_byte_array(self, js: dict[str, Any]) -> None:
        for case in js["var_byte_array"]:
            value, data = unhex(case["value"]), unhex(case["hex"])
            assert write_var_byte_array(value) == data
            assert write_var_byte_array(bytearray(value)) == data
            assert read_var_byte_array(data) == (value, len(data))

    def test_state_vector(self, js: dict[str, Any]) -> None:
        doc = js["doc"]
        expected = {int(k): v for k, v in doc["state_vector_decoded"].items()}
        assert decode_state_vector(unhex(doc["state_vector"])) == expected
        assert decode_state_vector(unhex(doc["empty_state_vector"])) == {}
        assert expected[doc["client_id"]] > 0

    def test_sync_step1(self, js: dict[str, Any]) -> None:
        sv, frame = unhex(js["doc"]["state_vector"]), unhex(js["doc"]["frames"]["sync_step1"])
        assert create_sync_step1_message(sv) == frame
        assert decode_messages(frame) == [
            Message(YMessageType.SYNC, sv, YSyncMessageType.SYNC_STEP1)
        ]

    def test_sync_step2(self, js: dict[str, Any]) -> None:
        doc = js["doc"]
        for update, frame in (
            (unhex(doc["update"]), unhex(doc["frames"]["sync_step2"])),
            (unhex(doc["diff_update"]), unhex(doc["frames"]["sync_step2_diff"])),
        ):
            assert create_sync_step2_message(update) == frame
            assert decode_messages(frame) == [
                Message(YMessageType.SYNC, update, YSyncMessageType.SYNC_STEP2)
            ]

    def test_update_frames(self, js: dict[str, Any]) -> None:
        doc = js["doc"]
        assert len(doc["updates"]) == len(doc["frames"]["updates"]) >= 4
        for update_hex, frame_hex in zip(doc["updates"], doc["frames"]["updates"], strict=True):
            update, frame = unhex(update_hex), unhex(frame_hex)
            assert create_update_message(update) == frame
            assert decode_messages(frame) == [
                Message(YMessageType.SYNC, update, YSyncMessageType.SYNC_UPDATE)
            ]

    def test_empty_peer_reply_is_empty_update(self, js: dict[str, Any]) -> None:
        # y-protocols' readSyncMessage on an empty doc answers our step 1 with this frame.
        assert create_sync_step2_message(EMPTY_UPDATE) == unhex(js["doc"]["empty_peer_reply"])

    def test_pycrdt_applies_node_update(self, js: dict[str, Any]) -> None:
        doc = js["doc"]
        expected = (doc["text"], json.loads(doc["map_json"]))
        ydoc = pycrdt.Doc()
        [message] = decode_messages(unhex(doc["frames"]["sync_step2"]))
        ydoc.apply_update(message.payload)
        assert doc_content(ydoc) == expected
        # pycrdt agrees on the state vector (compared as a mapping: order is not fixed)
        sv = ydoc.get_state()
        assert decode_state_vector(sv) == decode_state_vector(unhex(doc["state_vector"]))

    def test_pycrdt_applies_incremental_updates(self, js: dict[str, Any]) -> None:
        doc = js["doc"]
        expected = (doc["text"], json.loads(doc["map_json"]))
        ydoc = pycrdt.Doc()
        for frame in doc["frames"]["updates"]:
            [message] = decode_messages(unhex(frame))
            ydoc.apply_update(message.payload)
        assert doc_content(ydoc) == expected

        # first update, then step 2 against the state vector it produced
        ydoc = pycrdt.Doc()
        ydoc.apply_update(unhex(doc["updates"][0]))
        assert ydoc.get_state() == unhex(doc["sv_after_first"])
        [message] = decode_messages(unhex(doc["frames"]["sync_step2_diff"]))
        ydoc.apply_update(message.payload)
        assert doc_content(ydoc) == expected

    def test_awareness(self, js: dict[str, Any]) -> None:
        aw = js["awareness"]
        assert aw["local"]["entries"][0]["state"] == aw["local_state_json"]
        for name in ("local", "both", "disconnect", "removal"):
            case = aw[name]
            update, frame = unhex(case["update"]), unhex(case["frame"])
            entries = [AwarenessEntry(**entry) for entry in case["entries"]]
            assert encode_awareness_update(entries) == update, name
            assert create_awareness_message(update) == frame, name
            assert decode_awareness_update(update) == entries, name
            assert decode_messages(frame) == [Message(YMessageType.AWARENESS, update)], name
        both = decode_awareness_update(unhex(aw["both"]["update"]))
        assert [e.client_id for e in both] == [42, 2**32 - 1]
        assert both[1].parsed_state() == {"user": {"name": "Bob 😀"}, "selection": [3, 4]}
        assert not any(e.removed for e in both)
        for name, clock in (("disconnect", 1), ("removal", 2)):
            [entry] = decode_awareness_update(unhex(aw[name]["update"]))
            assert entry.removed
            assert entry.parsed_state() is None
            assert (entry.client_id, entry.clock) == (42, clock)

    def test_permission_denied(self, js: dict[str, Any]) -> None:
        for case in js["auth"]:
            frame = unhex(case["frame"])
            assert create_permission_denied_message(case["reason"]) == frame
            [message] = decode_messages(frame)
            assert message.type is YMessageType.AUTH
            assert message.sync_type is None
            assert read_permission_denied(message.payload) == case["reason"]
            assert create_raw_message(message.payload) == frame

    def test_query_awareness(self, js: dict[str, Any]) -> None:
        frame = unhex(js["query_awareness"])
        assert create_query_awareness_message() == frame
        assert decode_messages(frame) == [Message(YMessageType.QUERY_AWARENESS)]

    def test_several_messages_in_one_frame(self, js: dict[str, Any]) -> None:
        parts = [unhex(part) for part in js["combined"]["parts"]]
        frame = unhex(js["combined"]["frame"])
        assert b"".join(parts) == frame
        expected = [message for part in parts for message in decode_messages(part)]
        assert len(expected) == len(parts)
        for data in (frame, bytearray(frame), memoryview(frame)):
            assert decode_messages(data) == expected
        assert [m.type for m in expected] == [
            YMessageType.SYNC,
            YMessageType.SYNC,
            *[YMessageType.SYNC] * len(js["doc"]["updates"]),
            YMessageType.QUERY_AWARENESS,
            YMessageType.AWARENESS,
            YMessageType.AWARENESS,
            YMessageType.AUTH,
        ]
        # and yutils builds the very same frame
        doc, aw = js["doc"], js["awareness"]
        rebuilt = b"".join(
            [
                create_sync_step1_message(unhex(doc["state_vector"])),
                create_sync_step2_message(unhex(doc["update"])),
                *(create_update_message(unhex(u)) for u in doc["updates"]),
                create_query_awareness_message(),
                create_awareness_message(
                    encode_awareness_update(AwarenessEntry(**e) for e in aw["both"]["entries"])
                ),
                create_awareness_message(
                    encode_awareness_update(AwarenessEntry(**e) for e in aw["removal"]["entries"])
                ),
                create_permission_denied_message(js["auth"][2]["reason"]),
            ]
        )
        assert rebuilt == frame
        # read_message walks the same boundaries
        pos, offsets = 0, []
        while pos < len(frame):
            _, pos = read_message(frame, pos)
            offsets.append(pos)
        sizes = [len(p) for p in parts]
        assert offsets == [sum(sizes[: i + 1]) for i in range(len(sizes))]

    def test_rejects_what_lib0_rejects(self, js: dict[str, Any]) -> None:
        readers = {
            "varUint": read_var_uint,
            "varString": read_var_string,
            "varUint8Array": read_var_byte_array,
            "awareness": decode_awareness_update,
        }
        assert any("error" in case for case in js["lib0_decoding"])
        for case in js["lib0_decoding"]:
            read = readers[case["kind"]]
            data = unhex(case["input"])
            if "error" in case:
                with pytest.raises(ProtocolError):
                    read(data)
                continue
            # lib0 accepted it; yutils may be stricter (trailing awareness bytes) but
            # must never fail with anything other than ProtocolError
            try:
                read(data)
            except ProtocolError:
                assert case["kind"] == "awareness", case


# --- strictness (no node needed) --------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\x80", b"\xff", b"\xff\xff\xff", b"\x80" * 20])
def test_truncated_var_uint(data: bytes) -> None:
    with pytest.raises(ProtocolError, match="truncated"):
        read_var_uint(data)
    with pytest.raises(ProtocolError):
        read_var_uint(b"\x01" + data, 1)


def test_read_var_uint_past_end() -> None:
    with pytest.raises(ProtocolError):
        read_var_uint(b"\x01", 1)
    with pytest.raises(ProtocolError):
        read_var_uint(b"\x01", 5)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80\x80\x80\x80\x80\x80\x80\x10",  # 2**53
        b"\xff\xff\xff\xff\xff\xff\xff\x7f",  # 2**56 - 1
        b"\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 2**57 - 1
        b"\xff" * 9 + b"\x7f",  # 70 bits
        b"\x80" * 9 + b"\x01",  # 2**63, zero low bits
        b"\xff" * 30,  # too wide and truncated
    ],
)
def test_var_uint_wider_than_53_bits(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_var_uint(data)
    with pytest.raises(ProtocolError):
        decode_messages(b"\x00\x02" + data + b"\x00")
    with pytest.raises(ProtocolError):
        decode_messages(data)


def test_var_uint_limits() -> None:
    top = write_var_uint(MAX_VAR_UINT)
    assert top == b"\xff\xff\xff\xff\xff\xff\xff\x0f"
    assert read_var_uint(top) == (MAX_VAR_UINT, 8)
    # lib0 accepts non-minimal encodings (padding with 0x80); so does yutils
    assert read_var_uint(b"\x80\x80\x00") == (0, 3)
    assert read_var_uint(b"\x81\x80\x80\x80\x80\x80\x80\x00") == (1, 8)
    for value in [*range(300), 2**14 - 1, 2**14, 2**31, 2**32 + 1, MAX_VAR_UINT - 1]:
        data = write_var_uint(value)
        assert read_var_uint(data) == (value, len(data))
        assert data[-1] < 0x80
        assert all(b >= 0x80 for b in data[:-1])


@pytest.mark.parametrize("value", [-1, -(2**60), MAX_VAR_UINT + 1, 2**64, 2**200])
def test_encode_out_of_range(value: int) -> None:
    with pytest.raises(ProtocolError):
        write_var_uint(value)
    with pytest.raises(ProtocolError):
        encode_awareness_update([AwarenessEntry(value, 0, "{}")])
    with pytest.raises(ProtocolError):
        encode_awareness_update([AwarenessEntry(1, value, "{}")])


@pytest.mark.parametrize(
    ("data", "reader"),
    [
        (b"\x05abc", read_var_byte_array),
        (b"\x01", read_var_byte_array),
        (b"\x05abc", read_var_string),
        (b"\xff\xff\x03abc", read_var_string),
    ],
)
def test_declared_length_past_end(data: bytes, reader: Any) -> None:
    with pytest.raises(ProtocolError, match="past the end"):
        reader(data)


@pytest.mark.parametrize(
    "frame",
    [
        b"\x00\x00\x05ab",  # step 1
        b"\x00\x01\x02\x00",  # step 2
        b"\x00\x02\x80\x01" + b"\x00" * 127,  # update: 128 declared, 127 present
        b"\x01\x09\x01\x2a\x01\x02{}",  # awareness
        create_update_message(b"\x00\x00") + b"\x00\x02\x03\x00",  # second message short
    ],
)
def test_declared_length_past_end_of_frame(frame: bytes) -> None:
    with pytest.raises(ProtocolError, match="past the end"):
        decode_messages(frame)


@pytest.mark.parametrize("frame", [b"", bytearray(), memoryview(b"")])
def test_empty_frame(frame: Any) -> None:
    with pytest.raises(ProtocolError, match="empty"):
        decode_messages(frame)


@pytest.mark.parametrize("frame", [b"\x04", b"\x05\x00", b"\x7f", b"\x80\x01", b"\xff\x7f"])
def test_unknown_message_type(frame: bytes) -> None:
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode_messages(frame)
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode_messages(create_query_awareness_message() + frame)


@pytest.mark.parametrize("subtype", [b"\x03", b"\x04", b"\x7f", b"\x80\x01"])
def test_unknown_sync_subtype(subtype: bytes) -> None:
    with pytest.raises(ProtocolError, match="unknown sync message type"):
        decode_messages(b"\x00" + subtype + b"\x00")


def test_sync_message_without_subtype_or_payload() -> None:
    for frame in (b"\x00", b"\x00\x02", b"\x01", b"\x00\x00\x80"):
        with pytest.raises(ProtocolError):
            decode_messages(frame)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff",
        b"\xc3\x28",  # bad continuation
        b"\xc0\xaf",  # overlong "/"
        b"\xed\xa0\x80",  # UTF-8 encoded surrogate
        b"\xf4\x90\x80\x80",  # above U+10FFFF
        b"abc\xe2\x9c",  # truncated sequence
        b"\x80",  # lone continuation
    ],
)
def test_var_string_not_utf8(raw: bytes) -> None:
    with pytest.raises(ProtocolError, match="UTF-8"):
        read_var_string(write_var_byte_array(raw))
    update = b"\x01\x2a\x01" + write_var_byte_array(raw)
    with pytest.raises(ProtocolError, match="UTF-8"):
        decode_awareness_update(update)
    with pytest.raises(ProtocolError, match="UTF-8"):
        read_permission_denied(b"\x00" + write_var_byte_array(raw))


def test_var_string_round_trip() -> None:
    for text in ["", "a", "héllo ✓", "😀👍🏽", "\x00", "\ufeff", "x" * 10_000]:
        data = write_var_string(text)
        assert read_var_string(data) == (text, len(data))
        assert read_var_string(bytearray(data)) == (text, len(data))


def _awareness(state: str) -> bytes:
    return b"\x01\x2a\x01" + write_var_string(state)


@pytest.mark.parametrize(
    "state",
    [
        "",
        " ",
        "abc",
        "{",
        "{'a': 1}",
        '{"a": 1,}',
        "undefined",
        "NaN",
        "Infinity",
        "-Infinity",
        '{"x": NaN}',
        "[1, -Infinity]",
        "{} {}",
        "\ufeff{}",
        '"tab\tinside"',
        "[" * 100_000 + "]" * 100_000,  # valid for JSON.parse, too deep for Python
    ],
)
def test_awareness_state_not_json(state: str) -> None:
    with pytest.raises(ProtocolError, match="not JSON"):
        decode_awareness_update(_awareness(state))


@pytest.mark.parametrize(
    "state", ["null", "{}", '{"user": {"name": "A"}}', "[]", "1", "1e400", '"s"', " {} "]
)
def test_awareness_state_json(state: str) -> None:
    [entry] = decode_awareness_update(_awareness(state))
    assert entry == AwarenessEntry(42, 1, state)
    assert entry.removed is (state == "null")


@pytest.mark.parametrize("trailing", [b"\x00", b"\x01\x2a", b"\xff" * 10])
def test_trailing_bytes_after_awareness_update(trailing: bytes) -> None:
    update = encode_awareness_update([AwarenessEntry(42, 1, "{}")])
    assert decode_awareness_update(update) == [AwarenessEntry(42, 1, "{}")]
    with pytest.raises(ProtocolError, match="trailing"):
        decode_awareness_update(update + trailing)
    # inside a frame the awareness payload is length-delimited, so the frame itself decodes
    [message] = decode_messages(create_awareness_message(update + trailing))
    with pytest.raises(ProtocolError, match="trailing"):
        decode_awareness_update(message.payload)


def test_awareness_count_larger_than_entries() -> None:
    for update in (b"\x02\x2a\x01\x02{}", b"\x05", b"\xff\xff\xff\xff\x0f\x01"):
        with pytest.raises(ProtocolError):
            decode_awareness_update(update)


def test_awareness_empty_update() -> None:
    assert decode_awareness_update(b"\x00") == []
    assert encode_awareness_update([]) == b"\x00"
    with pytest.raises(ProtocolError):
        decode_awareness_update(b"")


def test_permission_denied_strict() -> None:
    assert read_permission_denied(b"\x00\x02no") == "no"
    for payload in (b"", b"\x01\x02no", b"\x80\x01\x00", b"\x00", b"\x00\x05no"):
        with pytest.raises(ProtocolError):
            read_permission_denied(payload)


def test_raw_message_runs_to_end_of_frame() -> None:
    frame = create_raw_message(b"\x00\x02\x01\x02")
    assert decode_messages(frame) == [Message(YMessageType.RAW, b"\x00\x02\x01\x02")]
    assert decode_messages(b"\x02") == [Message(YMessageType.AUTH, b"")]
    assert decode_messages(b"\x03\x03\x02\x03") == [
        Message(YMessageType.QUERY_AWARENESS),
        Message(YMessageType.QUERY_AWARENESS),
        Message(YMessageType.AUTH, b"\x03"),
    ]


def _sample_frames(rng: random.Random) -> list[bytes]:
    """Well-formed single-message frames of every type with random payloads."""
    frames = []
    for size in (0, 1, 2, 5, 127, 128, 300):
        payload = rng.randbytes(size)
        frames += [
            create_sync_step1_message(payload),
            create_sync_step2_message(payload),
            create_update_message(payload),
            create_awareness_message(payload),
        ]
    states = ['{"user": {"name": "é ✓"}}', "null", "[1, 2]"]
    entries = [AwarenessEntry(rng.randrange(2**32), rng.randrange(1000), s) for s in states]
    frames.append(create_awareness_message(encode_awareness_update(entries)))
    frames.append(create_permission_denied_message("nope ✓"))
    frames.append(create_query_awareness_message())
    return frames


def _check_decode(frame: bytes) -> list[Message] | None:
    """Decode ``frame`` and its payloads: only ProtocolError may escape, as None."""
    try:
        messages = decode_messages(frame)
    except ProtocolError:
        return None
    assert messages
    for message in messages:
        assert isinstance(message, Message)
        assert isinstance(message.payload, bytes)
        assert (message.sync_type is not None) is (message.type is YMessageType.SYNC)
        try:
            if message.type is YMessageType.AWARENESS:
                decode_awareness_update(message.payload)
            elif message.type is YMessageType.AUTH:
                read_permission_denied(message.payload)
        except ProtocolError:
            pass
    return messages


def test_round_trip_and_truncations() -> None:
    rng = random.Random(20240601)
    frames = _sample_frames(rng)
    for frame in frames:
        [message] = decode_messages(frame)
        for data in (frame, bytearray(frame), memoryview(frame)):
            assert decode_messages(data) == [message]
        if message.type in (YMessageType.AUTH, YMessageType.QUERY_AWARENESS):
            continue
        # a length-delimited message cut anywhere is a protocol error
        for cut in range(len(frame)):
            with pytest.raises(ProtocolError):
                decode_messages(frame[:cut])
    # several messages in one frame come back in order
    for _ in range(50):
        picked = rng.choices(frames[:-2], k=rng.randrange(1, 6))
        tail = rng.choice([b"", frames[-1], frames[-2]])
        expected = [decode_messages(f)[0] for f in picked]
        if tail:
            expected.append(decode_messages(tail)[0])
        assert decode_messages(b"".join(picked) + tail) == expected


def test_arbitrary_bytes_raise_only_protocol_error() -> None:
    rng = random.Random(1234)
    frames = _sample_frames(rng)
    decoded = 0
    for _ in range(5000):
        kind = rng.random()
        if kind < 0.4:
            # pure noise, biased toward small first bytes (valid message types)
            frame = bytes([rng.randrange(5)]) + rng.randbytes(rng.randrange(0, 40))
        elif kind < 0.7:
            # a valid frame with a few bytes flipped
            frame = bytearray(rng.choice(frames))
            for _ in range(rng.randrange(1, 4)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame)
        elif kind < 0.85:
            # a valid frame, cut or extended
            frame = rng.choice(frames)
            frame = frame[: rng.randrange(len(frame) + 1)] + rng.randbytes(rng.randrange(3))
        else:
            frame = rng.randbytes(rng.randrange(0, 64))
        if _check_decode(frame) is not None:
            decoded += 1
    # both outcomes were exercised
    assert 100 < decoded < 4900


def test_arbitrary_awareness_updates_raise_only_protocol_error() -> None:
    rng = random.Random(99)
    good = encode_awareness_update(
        [AwarenessEntry(1, 2, '{"a": [1, "é"]}'), AwarenessEntry(2**40, 0, "null")]
    )
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = bytes(data[: rng.randrange(len(data) + 1)])
        try:
            entries = decode_awareness_update(data)
        except ProtocolError:
            continue
        # what was accepted re-encodes to something that decodes the same
        assert decode_awareness_update(encode_awareness_update(entries)) == entries
