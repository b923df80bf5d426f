"""A notebook client built on an independent Yjs implementation: pycrdt + jupyter_ydoc.

It speaks the y-websocket protocol the way JupyterLab's provider does (SYNC handshake,
updates both ways, RAW save requests) so that what it reads is what JupyterLab would read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pycrdt
from jupyter_ydoc import YNotebook, YUnicode
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jupyter_ydjango.protocol.messages import (
    YMessageType,
    decode_messages,
    read_var_string,
    write_var_string,
    write_var_uint,
)


class DocClient:
    """One websocket to a document room, holding a pycrdt ``Doc``."""

    def __init__(self, ws: ClientConnection, kind: str | type, doc: pycrdt.Doc | None = None,
                 ) -> None:
        self.ws = ws
        self.doc = pycrdt.Doc() if doc is None else doc
        #: ``kind`` is "notebook", "text", or a jupyter_ydoc class (the model's type)
        model_class = kind if isinstance(kind, type) else (
            YNotebook if kind == "notebook" else YUnicode)
        self.model: Any = model_class(self.doc)
        self.synced = asyncio.Event()
        #: JSON messages the server sent as RAW (save replies, failures).
        self.raw: list[dict[str, Any]] = []
        self.denied: list[bytes] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._raw_event = asyncio.Event()
        self._applying = False
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._answers = 0  # SYNC step 2 messages received
        self._subscription = self.doc.observe(self._on_transaction)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._writer = asyncio.get_running_loop().create_task(self._write())
        self._save_ids = 0

    @classmethod
    async def open(cls, url: str, kind: str | type = "notebook",
                   headers: dict[str, str] | None = None, sync: bool = True, timeout: float = 30,
                   doc: pycrdt.Doc | None = None) -> DocClient:
        """Connect to ``url`` and (with ``sync``) wait until the document arrived.

        ``doc``: the document to sync (a client reconnecting with what it holds); a new one
        by default.
        """
        ws = await connect(url, additional_headers=headers, max_size=None, open_timeout=timeout)
        client = cls(ws, kind, doc)
        with contextlib.suppress(ConnectionClosed):  # refused at once: see close_code
            await client.ws.send(pycrdt.create_sync_message(client.doc))
        if sync:
            await client.wait_synced(timeout)
        return client

    async def wait_synced(self, timeout: float = 30) -> None:
        """Wait for the server's answer to our SYNC step 1."""
        closed = asyncio.ensure_future(self.wait_closed(timeout))
        synced = asyncio.ensure_future(self.synced.wait())
        _done, _ = await asyncio.wait({closed, synced}, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        synced.cancel()
        if not self.synced.is_set():
            raise AssertionError(f"not synced (close code {self.close_code})")

    def _on_transaction(self, event: pycrdt.TransactionEvent) -> None:
        if not self._applying and event.update != b"\x00\x00":
            self._queue(pycrdt.create_update_message(event.update))

    def _queue(self, frame: bytes) -> None:
        self._outbox.put_nowait(frame)

    async def _write(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await self.ws.send(await self._outbox.get())

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                for message in decode_messages(frame):
                    self._handle(message)
        except Exception:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason or ""
            self._raw_event.set()

    def _handle(self, message: Any) -> None:
        if message.type is YMessageType.SYNC:
            frame = bytes([message.sync_type]) + write_var_uint(len(message.payload))
            self._applying = True
            try:
                reply = pycrdt.handle_sync_message(frame + message.payload, self.doc)
            finally:
                self._applying = False
            if reply is not None:
                self._queue(reply)
            if message.sync_type == 1:
                self._answers += 1
                self.synced.set()
        elif message.type is YMessageType.RAW:
            if message.payload[:1] == b"\x00":
                self.denied.append(message.payload)
            else:
                text, _ = read_var_string(message.payload)
                self.raw.append(json.loads(text))
            self._raw_event.set()

    async def flush(self, timeout: float = 30) -> None:
        """Wait until the server has handled every local change made so far, and sent this
        client what they caused: a SYNC step 1 sent after them is answered (the server
        handles, and answers, a connection's frames in order). Returns at once on a closed
        connection."""
        answers = self._answers
        self._queue(pycrdt.create_sync_message(self.doc))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._answers == answers and self.close_code is None:
            if loop.time() > deadline:
                raise AssertionError("the server did not answer a SYNC step 1")
            await asyncio.sleep(0.01)

    async def save(self, timeout: float = 30) -> str:
        """Ask the server to save now, as JupyterLab does; the reply's status."""
        await self.flush()
        self._save_ids += 1
        request_id = self._save_ids
        await self.ws.send(b"\x02" + write_var_string("save") + write_var_uint(request_id))
        reply = await self.wait_raw(lambda m: m.get("responseTo") == request_id, timeout)
        return reply["status"]

    async def wait_raw(self, predicate: Any, timeout: float = 10) -> dict[str, Any]:
        """Wait for a RAW JSON message matching ``predicate``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for message in self.raw:
                if predicate(message):
                    return message
            if self.close_code is not None:
                raise AssertionError(f"closed ({self.close_code}) before the message came")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no matching RAW message; got {self.raw}")
            self._raw_event.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._raw_event.wait(), remaining)

    async def wait_for(self, predicate: Any, timeout: float = 10) -> Any:
        """Wait until ``predicate(self.model)`` is true; returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = predicate(self.model)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)

    async def wait_closed(self, timeout: float = 10) -> int | None:
        """Wait until the server closed the connection; its close code."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        return self.close_code

    async def close(self) -> None:
        """Close the connection (the document stays usable, e.g. to reconnect with it)."""
        self.doc.unobserve(self._subscription)
        self._writer.cancel()
        await self.ws.close()
        self._reader.cancel()
