"""Files to documents and documents to files, away from the event loop.

Importing a big notebook means parsing and validating it and building a document of
thousands of shared types; saving one means reading it back, validating it and writing JSON.
Both are hundreds of milliseconds of Python (or of C that holds the GIL, like ``json.dumps``)
that would stall every other room of the process, and an import leaves tens of megabytes of
freed objects that the allocator keeps. So both run in a worker process
(``YDJANGO_CONVERSION_PROCESSES``, kept warm), which gets and gives bytes and strings only;
small files, and a big file that would hold up nobody (no one in another room, no other big
conversion in the minute before it), are converted in a thread.

An import (:func:`build`) hands back:

* ``chunks``: the document as a few incremental updates, each of at most a few hundred cells,
  which the room applies one after the other, letting other rooms run in between;
* ``state``: the whole document as one update, stored as the import snapshot.

The build is deterministic: a fixed client id (:data:`IMPORT_CLIENT_ID`) and a fixed order
of operations give the same Yjs items every time, so two imports of one file never
duplicate cells for clients that hold the items of the other.

A save (:func:`render`) takes the document's :meth:`~.formats.DocumentFormat.dump`, made
quickly on the event loop, and gives the file's bytes.

With ``YDJANGO_CONVERSION_PROCESSES = 0`` everything runs in threads of the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

import pycrdt

from jupyter_ydjango.formats.builtin import FormatError
from jupyter_ydjango.formats.ydoc import find_format
from jupyter_ydjango.heap import collector_paused, release_memory

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Client id of the documents files are imported into: a fixed one, so that importing the same
#: file twice creates the same Yjs items (never duplicated cells when histories meet).
IMPORT_CLIENT_ID = 0


@dataclass(frozen=True)
class Imported:
    """A file built into a document, as bytes."""

    #: Incremental updates that together make the document, to apply in order.
    chunks: list[bytes]
    #: The whole document as one update.
    state: bytes
    #: The file's shape (see :meth:`~.formats.DocumentFormat.shape`).
    shape: Any = None


def build(kind: tuple[str, str], data: bytes, path: str, content_hash: str) -> Imported:
    """Parse a file's bytes and build its document (runs in the worker).

    :raises FormatError: the file cannot be loaded as ``kind``.
    """
    doc_format = _format(kind)
    with collector_paused():
        content = doc_format.parse(data)
        doc = pycrdt.Doc(client_id=IMPORT_CLIENT_ID)
        chunks = []
        state_vector = b"\x00"
        for _ in doc_format.load_steps(doc, content, path, content_hash):
            chunks.append(doc.get_update(state_vector))
            state_vector = doc.get_state()
        imported = Imported(chunks, doc.get_update(), doc_format.shape(content))
        del doc, content
    if _IN_WORKER:
        release_memory_soon()
    return imported


def render(kind: tuple[str, str], dump: Any, shape: Any = None) -> bytes:
    """A document's file bytes from its dump, in the file's shape (runs in the worker).

    :raises FormatError: the document cannot be written as a valid file.
    """
    with collector_paused():
        data = _format(kind).render_dump(dump, shape)
    if _IN_WORKER:
        release_memory_soon()
    return data


def release_memory_soon() -> None:
    """Give the memory a conversion freed back to the system, in the background: the caller
    waits for the conversion's result, not for this (a collection and a trim after a big
    notebook take 50-150 ms)."""
    threading.Thread(target=release_memory, name="ydjango-release-memory", daemon=True).start()


def _format(kind: tuple[str, str]) -> Any:
    doc_format = find_format(*kind)
    if doc_format is None:
        raise FormatError(f"no format serves {kind[0]}:{kind[1]} documents")
    return doc_format


def _size(dump: Any) -> int:
    return len(dump) if isinstance(dump, (str, bytes)) else sum(_size(part) for part in dump)


class Converter:
    """Runs :func:`build` and :func:`render` in a pool of worker processes, one pool per server
    process.

    Files under :attr:`process_threshold` bytes, and every file while the workers are still
    starting, are converted in a thread instead.
    """

    #: Files smaller than this are converted in a thread of the server: for them the trip to a
    #: worker costs more than it saves (a 1.7 MB notebook of images converts in ~30 ms; a
    #: 4 MB one of 5,000 cells takes a second).
    process_threshold = 4 * 1024 * 1024
    #: Seconds without conversions after which the workers stop (they start again when needed).
    #: Workers start when a big conversion comes within this time of the previous one.
    idle_timeout = 60.0

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._ready: concurrent.futures.Future[None] | None = None
        self._lock = threading.Lock()
        self._last_use = time.monotonic()
        self._last_big = -float("inf")
        self._running = 0

    def _executor(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # spawn: a fork of a server with running threads could inherit held locks
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    self.processes, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_init_worker, initargs=(os.getpid(),))
                with _without_main():
                    self._ready = self._pool.submit(_warm)
            return self._pool

    def warm_up(self) -> None:
        """Start the workers now, so that the next big conversion does not wait for them."""
        if self.processes > 0:
            self._executor()
            self._last_use = time.monotonic()
            self._stop_when_idle()

    def _stop_when_idle(self) -> None:
        """Stop the workers once they have had nothing to do for :attr:`idle_timeout`."""
        def check() -> None:
            if self._running == 0 and time.monotonic() - self._last_use >= self.idle_timeout:
                self.shutdown()

        timer = threading.Timer(self.idle_timeout + 0.1, check)
        timer.daemon = True
        timer.start()

    @property
    def ready(self) -> bool:
        """Whether the worker processes are up."""
        ready = self._ready
        return ready is not None and ready.done() and ready.exception() is None

    async def build(self, kind: tuple[str, str], data: bytes, path: str,
                    content_hash: str, *, others_waiting: bool = False) -> Imported:
        """:func:`build`, in a worker for a big file (see :meth:`_run` for
        ``others_waiting``). :raises FormatError:"""
        return await self._run(len(data), build, kind, data, path, content_hash,
                               others_waiting=others_waiting)

    async def render(self, kind: tuple[str, str], dump: Any, shape: Any = None, *,
                     others_waiting: bool = False) -> bytes:
        """:func:`render`, in a worker for a big document. :raises FormatError:"""
        return await self._run(_size(dump), render, kind, dump, shape,
                               others_waiting=others_waiting)

    async def _run(self, size: int, func: Callable[..., T], *args: Any,
                   others_waiting: bool = False) -> T:
        """``func(*args)`` in a worker, or a thread for small sizes. A worker that died is
        replaced and the call tried once more (it may have been killed from outside, or run
        out of memory).

        A big conversion goes to a worker when it would hold up someone: ``others_waiting``
        (people in other rooms of the process, whose edits a conversion in a thread would
        stall: it then waits for a worker to start), or when big conversions recur (saves of
        a big notebook). One big notebook opened alone is converted in a thread: a worker
        would stay for a minute, holding its memory, for nothing.
        """
        big, recurring = size >= self.process_threshold, False
        if big:
            recurring = time.monotonic() - self._last_big < self.idle_timeout
            self._last_big = time.monotonic()
        wanted = self.processes > 0 and big and (recurring or others_waiting)
        if wanted and not self.ready:
            self.warm_up()  # for the next one at least
            if others_waiting and self._ready is not None:
                with contextlib.suppress(Exception):  # a worker that cannot start: a thread
                    await asyncio.wait_for(asyncio.wrap_future(self._ready), 30)
        if not wanted or not self.ready:
            try:
                return await asyncio.to_thread(func, *args)
            finally:
                if big:
                    release_memory_soon()
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            executor = self._executor()
            self._running += 1
            try:
                with _without_main():  # submit may start a worker
                    future = loop.run_in_executor(executor, func, *args)
                return await future
            except BrokenProcessPool:
                logger.error("a conversion worker died running %s (attempt %d)",
                             func.__name__, attempt)
                with self._lock:
                    if self._pool is executor:
                        self._pool = self._ready = None
                executor.shutdown(wait=False)
                if attempt == 2:
                    raise
            finally:
                self._running -= 1
                self._last_use = time.monotonic()
                self._stop_when_idle()
        raise AssertionError("unreachable")

    def shutdown(self) -> None:
        """Stop the workers."""
        with self._lock:
            pool, self._pool, self._ready = self._pool, None, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


@contextlib.contextmanager
def _without_main() -> Iterator[None]:
    """Start workers without the server's ``__main__`` module.

    A spawned process imports the ``__main__`` module of its parent unless that module has
    neither a name nor a file: a server run as ``python -m daphne`` (whose ``__main__`` is not
    guarded) would start once more in every worker.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def _warm() -> None:
    """Import what a conversion needs."""
    from jupyter_ydjango.formats import builtin as formats  # noqa: F401


#: Whether this process is a conversion worker.
_IN_WORKER = False


def _init_worker(server_pid: int) -> None:
    """A worker process's start: warm up, and exit as soon as the server is gone (a server
    killed with SIGKILL cannot stop its workers)."""
    global _IN_WORKER
    _IN_WORKER = True
    _warm()

    def watch() -> None:
        while os.getppid() == server_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="ydjango-import-watchdog", daemon=True).start()


_converter: Converter | None = None


def get_converter(processes: int | None = None) -> Converter:
    """The converter of this process, made at the first call with ``processes`` worker
    processes (the rooms pass ``YDJANGO_CONVERSION_PROCESSES``; 1 where none is given)."""
    global _converter
    if _converter is None:
        _converter = Converter(1 if processes is None else int(processes))
    return _converter
