"""Our wire-format helpers next to pycrdt's: the same bytes where we use pycrdt's encoders, and
stricter decoding where we keep our own (the cases below are why ``yutils`` decodes frames
itself)."""

from __future__ import annotations

import pycrdt
import pytest
from pycrdt import Decoder, Encoder

from jupyter_ydjango.protocol.messages import (
    ProtocolError,
    create_awareness_message,
    create_sync_step1_message,
    create_sync_step2_message,
    create_update_message,
    decode_messages,
    read_var_byte_array,
    read_var_string,
    read_var_uint,
    write_var_string,
    write_var_uint,
)


def real_update() -> bytes:
    doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, "héllo ☃ " * 40)  # long: a 2-byte length
    return doc.get_update()


def test_builders_give_pycrdts_bytes() -> None:
    update = real_update()
    assert create_update_message(update) == pycrdt.create_update_message(update)
    assert create_awareness_message(b"\x01\x02") == pycrdt.create_awareness_message(b"\x01\x02")
    doc = pycrdt.Doc()
    doc.get("t", type=pycrdt.Text).insert(0, "x")
    assert create_sync_step1_message(doc.get_state()) == pycrdt.create_sync_message(doc)
    for num in (0, 1, 127, 128, 300, 2**32, 2**53 - 1):
        assert write_var_uint(num) == pycrdt.write_var_uint(num)


def test_step2_decodes_in_pycrdt() -> None:
    update = real_update()
    reply = create_sync_step2_message(update)
    doc = pycrdt.Doc()
    pycrdt.handle_sync_message(reply[1:], doc)
    assert str(doc.get("t", type=pycrdt.Text)).startswith("héllo ☃")


def test_a_length_past_the_end_is_an_error_not_a_shorter_message() -> None:
    frame = create_update_message(real_update())[:-10]  # cut off
    assert Decoder(frame[2:]).read_message() is not None  # pycrdt: a shorter message
    with pytest.raises(ProtocolError, match="runs past the end"):
        read_var_byte_array(frame, 2)
    with pytest.raises(ProtocolError):
        decode_messages(frame)


def test_a_truncated_var_uint_is_a_protocol_error() -> None:
    with pytest.raises(IndexError):  # pycrdt
        Decoder(b"\x80\x80").read_var_uint()
    with pytest.raises(ProtocolError, match="truncated"):
        read_var_uint(b"\x80\x80")


def test_var_uints_wider_than_javascript_are_refused() -> None:
    wide = bytes([0xFF] * 7 + [0x7F])  # 56 bits
    assert Decoder(wide).read_var_uint() == 2**56 - 1  # pycrdt takes it
    with pytest.raises(ProtocolError, match="53 bits"):
        read_var_uint(wide)


def test_strings_are_counted_in_utf8_bytes() -> None:
    encoder = Encoder()
    encoder.write_var_string("☃")
    assert encoder.to_bytes() == b"\x01" + "☃".encode()  # pycrdt: length 1, 3 bytes follow
    assert write_var_string("☃") == b"\x03" + "☃".encode()
    assert read_var_string(write_var_string("héllo ☃"))[0] == "héllo ☃"
