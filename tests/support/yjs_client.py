"""Asyncio wrapper around ``tests/support/js/driver.mjs``: real Yjs / y-websocket clients for tests.

The node process is driven with newline-delimited JSON: every request has an integer ``rid``
and a ``cmd``; the reply has the same ``rid`` and ``ok`` (plus result fields, or ``error``).

Example::

    async with NodeDriver() as driver:
        a = await driver.connect("ws://127.0.0.1:8000/api/collaboration/room", "doc-id")
        b = await driver.connect("ws://127.0.0.1:8000/api/collaboration/room", "doc-id")
        await a.append("hello")
        assert await b.wait_text("hello") == "hello"

Timestamps returned by the driver (``t`` fields, :meth:`NodeDriver.now`) are milliseconds on
the node clock ``performance.timeOrigin + performance.now()`` (close to Unix epoch ms).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

JS_DIR = Path(__file__).resolve().parent / "js"
DRIVER = JS_DIR / "driver.mjs"

#: extra seconds the Python side waits beyond a driver-side ``timeout_ms``
_GRACE = 5.0


class DriverError(Exception):
    """A driver command failed (``ok: false``), timed out, or the driver process died.

    ``reply`` holds the whole reply (for instance ``code``/``reason``/``events`` of a failed
    ``connect``, or the current ``text`` of a timed-out ``wait_text``); it is empty when the
    failure happened on the Python side.
    """

    def __init__(self, message: str, reply: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply: dict[str, Any] = reply or {}


class NodeDriver:
    """Runs ``node tests/support/js/driver.mjs`` and exchanges JSON requests/replies with it."""

    def __init__(
        self,
        *,
        node: str = "node",
        js_dir: Path = JS_DIR,
        default_timeout: float = 15.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.node = node
        self.js_dir = js_dir
        self.default_timeout = default_timeout
        self.env = env
        self.proc: asyncio.subprocess.Process | None = None
        #: the last lines the driver wrote to stderr (diagnostics)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=200)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._rids = itertools.count(1)
        self._names = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self._stderr_reader: asyncio.Task[None] | None = None
        self._dead: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> NodeDriver:
        """Start the node process and the reply reader; returns ``self``."""
        if self.proc is not None:
            raise RuntimeError("driver already started")
        env = {**os.environ, **(self.env or {})}
        self.proc = await asyncio.create_subprocess_exec(
            self.node,
            str(DRIVER),
            cwd=self.js_dir,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            limit=64 * 1024 * 1024,  # document states travel as one base64 line
        )
        self._reader = asyncio.create_task(self._read_replies())
        self._stderr_reader = asyncio.create_task(self._read_stderr())
        await self.now()  # the process is up and answering
        return self

    async def shutdown(self, timeout: float = 5.0) -> int | None:
        """Ask the driver to destroy all clients and exit; kill it if it does not.

        Returns the exit code of the process (``None`` if it was never started).
        """
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None and self._dead is None:
            with contextlib.suppress(DriverError):
                await self.call("shutdown", timeout=timeout)
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        for task in (self._reader, self._stderr_reader):
            if task is not None:
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(task, 1.0)
        return proc.returncode

    async def __aenter__(self) -> NodeDriver:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- plumbing --------------------------------------------------------------------------

    async def _read_replies(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        try:
            while line := await stdout.readline():
                try:
                    reply = json.loads(line)
                except json.JSONDecodeError:
                    self.stderr_tail.append(f"[python] non-JSON line on stdout: {line!r}")
                    continue
                fut = self._pending.pop(reply.get("rid"), None)
                if fut is None:
                    self.stderr_tail.append(f"[python] unmatched reply: {reply!r}")
                elif not fut.done():
                    fut.set_result(reply)
        finally:
            # No waiting here: a cancelled reader must finish even while node still runs.
            self._dead = f"node driver stopped (exit code {self.proc.returncode})"
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(DriverError(f"{self._dead}\n{self.stderr_text()}"))
            self._pending.clear()

    async def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip("\n"))

    def stderr_text(self) -> str:
        """The last lines of the driver's stderr, for error messages."""
        return "\n".join(self.stderr_tail)

    async def call(self, cmd: str, /, *, timeout: float | None = None, **fields: Any) -> dict:
        """Send one command and return its (``ok: true``) reply.

        ``fields`` become the request's fields (``id=...``, ``text=...``, ...). Raises
        :class:`DriverError` on ``ok: false``, when no reply came within ``timeout`` seconds
        (default: ``timeout_ms`` of the request plus a grace period, or ``default_timeout``),
        or when the process is gone.
        """
        proc = self.proc
        if proc is None or proc.stdin is None:
            raise DriverError("node driver not started")
        if self._dead is not None or proc.returncode is not None:
            raise DriverError(f"{self._dead or 'node driver exited'}\n{self.stderr_text()}")
        if timeout is None:
            timeout_ms = fields.get("timeout_ms")
            timeout = timeout_ms / 1000 + _GRACE if timeout_ms is not None else self.default_timeout
        rid = next(self._rids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        line = json.dumps({**fields, "cmd": cmd, "rid": rid}) + "\n"
        try:
            proc.stdin.write(line.encode())
            await proc.stdin.drain()
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise DriverError(f"no reply to {cmd!r} (rid {rid}) within {timeout} s") from None
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise DriverError(f"node driver gone: {exc}\n{self.stderr_text()}") from exc
        finally:
            self._pending.pop(rid, None)
        if not reply.get("ok"):
            raise DriverError(f"{cmd}: {reply.get('error', 'unknown error')}", reply)
        return reply

    # -- driver-level commands -------------------------------------------------------------

    async def now(self) -> float:
        """Current time on the driver's clock (ms), comparable with all ``t`` fields."""
        return float((await self.call("now"))["t"])

    def client_from(self, exc: DriverError) -> YClient:
        """The handle of the client whose :meth:`connect` failed with ``exc``."""
        return YClient(self, str(exc.reply["id"]), int(exc.reply.get("client_id", -1)))

    async def connect(
        self,
        url: str,
        room: str,
        params: dict[str, str] | None = None,
        wait_sync: bool = True,
        reconnect: bool = True,
        *,
        name: str | None = None,
        awareness: Any = None,
        notebook: bool = False,
        text: str = "t",
        timeout: float = 10.0,
    ) -> YClient:
        """Create a y-websocket client on ``{url}/{room}?{params}`` with its own ``Y.Doc``.

        Waits until the provider is synced (unless ``wait_sync`` is false). With
        ``reconnect=False`` the provider stops after the first close, so that close codes can
        be observed. ``awareness`` (if given) is set as local awareness state before
        connecting. Raises :class:`DriverError` if the socket closes before syncing, with
        ``reply["code"]``, ``reply["reason"]``, ``reply["events"]``, ``reply["id"]`` and
        ``reply["client_id"]`` (the client stays registered, and keeps reconnecting if
        ``reconnect``: use ``driver.client_from(exc)`` to inspect or close it). With
        ``notebook``, JupyterLab's ``@jupyter/ydoc`` ``YNotebook`` is bound to the client's doc,
        for the ``nb_*`` methods. ``text`` names the ``Y.Text`` it types into and reads
        (``"source"``: a text file's content in a document room).
        """
        name = name or f"c{next(self._names)}"
        fields: dict[str, Any] = {
            "id": name,
            "url": url,
            "room": room,
            "params": params or {},
            "waitSync": wait_sync,
            "reconnect": reconnect,
            "timeout_ms": int(timeout * 1000),
        }
        if awareness is not None:
            fields["awareness"] = awareness
        if notebook:
            fields["notebook"] = True
        if text != "t":
            fields["text"] = text
        reply = await self.call("connect", **fields)
        return YClient(self, name, int(reply["client_id"]))

    async def clients(self) -> list[dict[str, Any]]:
        """Info about every client the driver knows (see :meth:`YClient.info`)."""
        return list((await self.call("clients"))["clients"])


class YClient:
    """One y-websocket client in the driver; text operations act on ``doc.getText("t")``."""

    def __init__(self, driver: NodeDriver, name: str, client_id: int) -> None:
        self.driver = driver
        #: the driver-side id of this client
        self.name = name
        #: the Yjs ``doc.clientID`` (also its awareness id)
        self.client_id = client_id

    def __repr__(self) -> str:
        return f"<YClient {self.name} client_id={self.client_id}>"

    async def _call(self, cmd: str, /, *, timeout: float | None = None, **fields: Any) -> dict:
        return await self.driver.call(cmd, id=self.name, timeout=timeout, **fields)

    async def insert(self, index: int, text: str) -> int:
        """Insert ``text`` at ``index``; returns the new local length."""
        return int((await self._call("insert", index=index, text=text))["length"])

    async def append(self, text: str) -> int:
        """Append ``text``; returns the new local length."""
        return int((await self._call("append", text=text))["length"])

    async def delete(self, index: int, length: int) -> int:
        """Delete ``length`` characters at ``index``; returns the new local length."""
        return int((await self._call("delete", index=index, length=length))["length"])

    async def text(self) -> str:
        """The current local content of the shared text."""
        return str((await self._call("text"))["text"])

    async def wait_text(
        self, text: str | None = None, length: int | None = None, timeout: float = 5.0
    ) -> str:
        """Wait until the text equals ``text`` and/or has ``length`` characters; returns it.

        On timeout raises :class:`DriverError` whose ``reply["text"]`` is the current text.
        """
        fields: dict[str, Any] = {"timeout_ms": int(timeout * 1000)}
        if text is not None:
            fields["text"] = text
        if length is not None:
            fields["length"] = length
        return str((await self._call("wait_text", **fields))["text"])

    async def nb_insert(self, cell: int, index: int, text: str) -> str:
        """Type ``text`` into cell ``cell`` at ``index`` (through ``@jupyter/ydoc``); the
        cell's new source."""
        return str((await self._call("nb_insert", cell=cell, index=index, text=text))["source"])

    async def nb_add_cell(self, index: int, source: str, cell_type: str = "code") -> str:
        """Insert a cell (through ``@jupyter/ydoc``); its id."""
        reply = await self._call("nb_add_cell", index=index, source=source, cell_type=cell_type)
        return str(reply["id"])

    async def nb_json(self) -> dict[str, Any]:
        """The notebook as ``@jupyter/ydoc``'s ``YNotebook.toJSON()`` reads this client's doc."""
        return dict((await self._call("nb_json"))["notebook"])

    async def state(self) -> bytes:
        """``Y.encodeStateAsUpdate(doc)`` (a Yjs v1 update)."""
        return base64.b64decode((await self._call("state"))["update"])

    async def apply(self, update: bytes) -> int:
        """Apply a Yjs v1 update locally (it is sent to the server); returns the new length."""
        reply = await self._call("apply", update=base64.b64encode(update).decode())
        return int(reply["length"])

    async def set_awareness(self, state: Any) -> None:
        """``provider.awareness.setLocalState(state)`` (``None`` marks the client offline)."""
        await self._call("set_awareness", state=state)

    async def awareness(self) -> dict[int, Any]:
        """All awareness states this client knows, by client id (its own one included)."""
        states = (await self._call("awareness"))["states"]
        return {int(k): v for k, v in states.items()}

    async def wait_awareness(
        self,
        client_id: int,
        present: bool = True,
        timeout: float = 5.0,
        *,
        state: Any = None,
    ) -> float:
        """Wait until ``client_id`` is present (or absent) in this client's awareness states.

        With ``state`` given (and ``present``), also wait until that client's state equals it.
        Returns the elapsed time in ms; raises :class:`DriverError` on timeout.
        """
        fields: dict[str, Any] = {
            "client_id": client_id,
            "present": present,
            "timeout_ms": int(timeout * 1000),
        }
        if state is not None:
            fields["state"] = state
        return float((await self._call("wait_awareness", **fields))["elapsed_ms"])

    async def close(self) -> bool:
        """Destroy the provider (it sends the awareness null state, then closes the socket).

        Returns whether the socket had finished closing within a second.
        """
        return bool((await self._call("close"))["socket_closed"])

    async def kill(self) -> dict[str, Any] | None:
        """Drop the socket abruptly (``ws.terminate()``): no awareness goodbye, no close frame,
        no reconnect. Returns the recorded ``connection-close`` event (or ``None``)."""
        return (await self._call("kill"))["event"]

    async def drop(self) -> None:
        """Lose the socket without any goodbye, as y-websocket's watchdog does after 30 s
        without a message: the provider reconnects by itself and announces its awareness
        state again, with the same clock."""
        await self._call("drop")

    async def disconnect(self) -> None:
        """``provider.disconnect()``: awareness goodbye and close; :meth:`reconnect` later."""
        await self._call("disconnect")

    async def reconnect(self, wait_sync: bool = True, timeout: float = 10.0) -> dict[str, Any]:
        """``provider.connect()`` again; by default wait until it is synced."""
        return await self._call("reconnect", wait_sync=wait_sync, timeout_ms=int(timeout * 1000))

    async def info(self) -> dict[str, Any]:
        """``{id, client_id, synced, connected, should_connect, destroyed, url, local_port}``
        (``local_port``: of the open websocket, ``None`` while disconnected)."""
        return await self._call("info")

    async def events(self) -> list[dict[str, Any]]:
        """Recorded provider events, oldest first, each with ``t`` and ``type``:

        ``status`` (``status``: connecting/connected/disconnected), ``sync`` (``synced``),
        ``connection-error`` (``message``), ``connection-close`` (``code``, ``reason``,
        ``was_clean``, ``local``: closed by the provider itself, then code is ``None``),
        ``closed`` (``code``, ``reason``: y-websocket gave up, e.g. on codes 4400-4499).
        """
        return list((await self._call("events"))["events"])

    async def close_events(self) -> list[dict[str, Any]]:
        """Only the ``connection-close`` events."""
        return [e for e in await self.events() if e["type"] == "connection-close"]

    async def watch(self) -> float:
        """Start (or restart) recording text changes; returns the driver time."""
        return float((await self._call("watch"))["t"])

    async def watched(self) -> list[dict[str, Any]]:
        """Text changes since :meth:`watch`: ``[{t, length, local}]``."""
        return list((await self._call("watched"))["watched"])

    async def burst(
        self,
        count: int,
        interval_ms: float = 0,
        *,
        chars: str | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any]]:
        """Append ``count`` single characters every ``interval_ms`` ms (0: as fast as possible,
        yielding to the event loop in between). Characters cycle through ``chars`` (default
        a-z). Returns ``[{t, length_after}]``, the send time of each character."""
        fields: dict[str, Any] = {"count": count, "interval_ms": interval_ms}
        if chars is not None:
            fields["chars"] = chars
        if timeout is None:
            timeout = count * interval_ms / 1000 + 10.0 + count / 1000
        return list((await self._call("burst", timeout=timeout, **fields))["sent"])
