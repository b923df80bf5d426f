"""Room formats of the document types registered with jupyter_ydoc (:mod:`ydoc_formats`).

The classes are the real ones: jupyterlab-chat's ``YChat`` and jupyter_ydoc's ``YBlob`` and
``YUnicode``; the servers' tests (``test_ydoc_rooms.py``) add a type of the tests' own through
the entry point.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from functools import partial
from typing import Any

import pycrdt
import pytest
from jupyter_ydoc import YBlob, YUnicode
from jupyter_ydoc.ybasedoc import YBaseDoc
from jupyterlab_chat.ychat import YChat

from jupyter_ydjango.formats.builtin import FORMATS, FormatError
from jupyter_ydjango.formats.ydoc import YDocFormat, document_classes, find_format

CHAT = json.dumps({
    "messages": [
        {"id": "m1", "body": "hello", "sender": "alice", "time": 1.5, "raw_time": False},
        {"id": "m2", "body": "hi alice", "sender": "bob", "time": 2.5, "raw_time": False},
    ],
    "users": {"alice": {"username": "alice"}, "bob": {"username": "bob"}},
    "attachments": {},
    "metadata": {"id": "chat-1"},
})


def loaded(doc_format: YDocFormat, content: Any, client_id: int = 0) -> pycrdt.Doc:
    doc = pycrdt.Doc(client_id=client_id)
    doc_format.load_into(doc, content, "a/room.chat", "hash-1")
    return doc


def test_find_format_keeps_our_own_formats_and_finds_registered_classes() -> None:
    assert find_format("json", "notebook") is FORMATS[("json", "notebook")]
    assert find_format("text", "file") is FORMATS[("text", "file")]
    chat = find_format("text", "chat")
    assert isinstance(chat, YDocFormat) and chat.document_class is YChat
    assert find_format("text", "chat") is chat  # one format per type: rooms share it
    blob = find_format("base64", "blob")
    assert isinstance(blob, YDocFormat) and blob.document_class is YBlob
    assert document_classes()["unicode"] is YUnicode


@pytest.mark.parametrize("kind", [("text", "no-such-type"), ("json", "chat"), ("", "")])
def test_find_format_refuses_what_no_class_serves(kind: tuple[str, str]) -> None:
    assert find_format(*kind) is None


async def test_a_chat_file_loads_through_set_and_saves_through_get() -> None:
    chat = YDocFormat(YChat, "text")
    content = chat.parse(CHAT.encode())
    doc = loaded(chat, content)
    state = doc.get("state", type=pycrdt.Map)
    assert (state["dirty"], state["hash"], state["path"]) == (False, "hash-1", "a/room.chat")
    saved = json.loads(chat.render(chat.read(doc)))
    assert saved == {**json.loads(CHAT), "attachments": {}}
    roots = chat.content_roots(doc)
    # the class's shared types but state, the ones whose changes are saved
    assert sorted(name for name in doc if name != "state") == [
        "attachments", "messages", "metadata", "users"]
    assert sorted(type(root).__name__ for root in roots) == ["Array", "Map", "Map", "Map"]


async def test_importing_a_chat_is_deterministic() -> None:
    chat = YDocFormat(YChat, "text")
    assert loaded(chat, CHAT).get_update() == loaded(chat, CHAT).get_update()
    # and a different client id makes different items (the check is not vacuous)
    assert loaded(chat, CHAT).get_update() != loaded(chat, CHAT, client_id=1).get_update()


async def test_a_class_whose_set_is_not_deterministic_is_reported(
        caplog: pytest.LogCaptureFixture) -> None:
    random_ids = YDocFormat(_RandomIds, "text")
    with caplog.at_level(logging.WARNING, logger="jupyter_ydjango.formats.ydoc"):
        loaded(random_ids, "one\ntwo\n")
        loaded(random_ids, "three\n")  # checked once per type
    warnings = [r.message for r in caplog.records if "not deterministic" in r.message]
    assert warnings == ["_RandomIds.set() is not deterministic: a file imported again would "
                        "not make the same document"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="jupyter_ydjango.formats.ydoc"):
        loaded(YDocFormat(YChat, "text"), CHAT)
    assert not caplog.records


def test_only_an_empty_document_is_loaded_into() -> None:
    text = YDocFormat(YUnicode, "text")
    doc = loaded(text, "hello")
    with pytest.raises(FormatError, match="not empty"):
        text.load_into(doc, "hello", "x.txt", "")


def test_the_file_format_decides_what_the_class_gets() -> None:
    blob = YDocFormat(YBlob, "base64")
    data = bytes(range(256))
    doc = loaded(blob, blob.parse(data))
    assert blob.render(blob.read(doc)) == data
    text = YDocFormat(YUnicode, "text")
    with pytest.raises(FormatError, match="not UTF-8"):
        text.parse(b"\xff\xfe")
    with pytest.raises(FormatError, match="did not return text"):
        text.render(b"bytes")
    with pytest.raises(FormatError, match="did not return bytes"):
        blob.render("text")
    with pytest.raises(ValueError, match="unsupported file format"):
        YDocFormat(YUnicode, "json")


def test_a_set_that_fails_is_a_load_error() -> None:
    text = YDocFormat(YUnicode, "text")
    with pytest.raises(FormatError, match=r"YUnicode\.set\(\)"):
        text.load_into(pycrdt.Doc(), 42, "x.txt", "")


async def test_a_bound_chat_runs_the_class_on_the_live_document() -> None:
    chat = YDocFormat(YChat, "text")
    doc = pycrdt.Doc()
    doc.apply_update(loaded(chat, CHAT).get_update())
    chat.bind(doc)
    document = chat.document(doc)
    assert isinstance(document, YChat) and chat.document(doc) is document
    # YChat marks a new instance dirty: binding puts the room's value back
    assert doc.get("state", type=pycrdt.Map)["dirty"] is False
    assert chat.read(doc) == document.get()

    # a client appends a message: the class stamps it with the server's time
    client = pycrdt.Doc()
    client.apply_update(doc.get_update())
    client_messages = client.get("messages", type=pycrdt.Array)
    client_messages.append(pycrdt.Map({"id": "m3", "body": "new", "sender": "bob",
                                       "time": 0.0, "raw_time": True}))
    doc.apply_update(client.get_update(doc.get_state()))
    await _until(lambda: document.get_message("m3").raw_time is False)
    assert document.get_message("m3").time > 2.5
    # server-side edits keep no undo history
    assert document.undo_manager.undo_stack == []

    chat.unbind(doc)
    with pytest.raises(KeyError):
        chat.document(doc)
    client_messages.append(pycrdt.Map({"id": "m4", "body": "late", "sender": "bob",
                                       "time": 0.0, "raw_time": True}))
    doc.apply_update(client.get_update(doc.get_state()))
    await asyncio.sleep(0.1)
    messages = doc.get("messages", type=pycrdt.Array).to_py()
    assert messages[-1]["id"] == "m4" and messages[-1]["raw_time"] is True  # nobody stamps it


async def test_replace_edits_only_a_changed_document() -> None:
    chat = YDocFormat(YChat, "text")
    doc = loaded(chat, CHAT)
    chat.bind(doc)
    before = doc.get_state()
    assert chat.replace(doc, chat.read(doc)) is False
    assert doc.get_state() == before
    changed = json.loads(CHAT)
    changed["messages"][0]["body"] = "changed on disk"
    assert chat.replace(doc, json.dumps(changed)) is True
    assert json.loads(chat.read(doc))["messages"][0]["body"] == "changed on disk"


async def _until(condition: Any, timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


class _RandomIds(YBaseDoc):
    """Lines of text, each stored under a random id (a ``set()`` that is not deterministic)."""

    def __init__(self, ydoc: pycrdt.Doc | None = None, awareness: Any = None) -> None:
        super().__init__(ydoc, awareness)
        self._ylines = self._ydoc.get("lines", type=pycrdt.Map)

    @property
    def version(self) -> str:
        return "1.0.0"

    def get(self) -> str:
        return "".join(line + "\n" for _, line in sorted(self._ylines.items()))

    def set(self, value: str) -> None:
        self._ylines.clear()
        for line in value.splitlines():
            self._ylines[f"{len(self._ylines):04}-{uuid.uuid4()}"] = line

    def observe(self, callback: Any) -> None:
        self.unobserve()
        self._subscriptions[self._ylines] = self._ylines.observe(partial(callback, "lines"))
