"""A y-websocket client at the frame level (pycrdt document, every frame recorded).

The node clients (:mod:`yclient`) are the real Yjs implementation; this one exists to
count and craft frames byte by byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import pycrdt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jupyter_ydjango.protocol.messages import (
    Message,
    YMessageType,
    YSyncMessageType,
    create_sync_step1_message,
    create_update_message,
    decode_messages,
)


@dataclass
class Received:
    """A frame as it arrived."""

    at: float
    data: bytes
    messages: list[Message] = field(default_factory=list)


class RawClient:
    """One websocket connection with a pycrdt document that applies what the server sends.

    The document stays on the event loop's thread, where the client was made and reads.
    """

    def __init__(self, ws: ClientConnection, client_id: int | None = None) -> None:
        self.ws = ws
        self.doc = pycrdt.Doc(client_id=client_id)
        self.frames: list[Received] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str, headers: dict[str, str] | None = None, *,
                   client_id: int | None = None) -> RawClient:
        """Connect (no handshake yet). ``client_id``: the document's Yjs client id (default:
        pycrdt's, 53 bits wide; yjs draws 32-bit ones)."""
        ws = await connect(url, additional_headers=headers, max_size=None, open_timeout=10)
        return cls(ws, client_id)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for data in self.ws:
                frame = Received(time.monotonic(), bytes(data))
                frame.messages = decode_messages(frame.data)
                for message in frame.messages:
                    if message.type is YMessageType.SYNC and (
                        message.sync_type is not YSyncMessageType.SYNC_STEP1
                    ):
                        self.doc.apply_update(message.payload)
                self.frames.append(frame)
                self._changed.set()

    async def send(self, data: bytes) -> None:
        """Send one frame."""
        await self.ws.send(data)

    async def handshake(self, timeout: float = 10) -> None:
        """Send SYNC step 1 and wait for the server's step 2."""
        await self.send(create_sync_step1_message(self.doc.get_state()))
        await self.wait_for(lambda m: m.sync_type is YSyncMessageType.SYNC_STEP2, timeout)

    async def barrier(self, timeout: float = 10) -> int:
        """Wait until the server has handled every frame this client sent so far and every
        frame it queued for this client so far has arrived: a SYNC step 1 is answered after
        them (a connection's frames are handled, and written, in order). Returns the index in
        :attr:`frames` of the answer: the frames before it are those."""
        mark = len(self.frames)
        await self.send(create_sync_step1_message(self.doc.get_state()))
        await self.wait_for(lambda m: m.sync_type is YSyncMessageType.SYNC_STEP2, timeout,
                            start=mark)
        return next(i for i in range(mark, len(self.frames)) if any(
            m.sync_type is YSyncMessageType.SYNC_STEP2 for m in self.frames[i].messages))

    async def wait_for(self, predicate, timeout: float = 10, start: int = 0) -> Message:
        """Wait for a message matching ``predicate``, received in frame ``start`` or later;
        return it."""
        seen = start
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames[seen:]:
                for message in frame.messages:
                    if predicate(message):
                        return message
            seen = len(self.frames)
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching message")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def text(self, name: str = "t") -> str:
        """The content of the shared text ``name``."""
        return str(self.doc.get(name, type=pycrdt.Text))

    async def edit(self, text: str, name: str = "t") -> bytes:
        """Append ``text`` locally and send the update; return the update."""
        ytext = self.doc.get(name, type=pycrdt.Text)
        before = self.doc.get_state()
        with self.doc.transaction():
            ytext += text
        update = self.doc.get_update(before)
        await self.send(create_update_message(update))
        return update

    async def wait_closed(self, timeout: float = 10) -> int | None:
        """Wait for the server to close the connection; return the close code."""
        await asyncio.wait_for(self.ws.wait_closed(), timeout)
        return self.ws.close_code

    async def close(self) -> None:
        """Close the connection."""
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self.ws.close_code is not None
