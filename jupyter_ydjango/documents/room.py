"""A room bound to a file: its history in the database, its content saved back to disk.

:class:`DocumentRoom` implements the room lifecycle hooks:

``on_load``
    Replay the document's history from the database; a document without history imports its
    file once (deterministically, in exactly one process: see :func:`store.import_file`). A
    file changed on disk while no room had it loaded is then handled like any change on disk.
``on_change``
    Queue the update for the log (written by one task, batched, within milliseconds) unless it
    came from another process (that process logs it, or this one does if it goes away first:
    see :mod:`jupyter_ydjango.rooms.relay`) and schedule a save.
``on_unload``
    Write what is queued, save, compact, stop the tasks.

Saves are debounced (``YDJANGO_SAVE_DELAY`` of quiet, at most ``YDJANGO_SAVE_MAX_WAIT``
after the first unsaved change) and never dropped; a save validates before writing, writes
atomically, and keeps the last good file when the document is invalid. A watcher polls the
file: a change made by someone else is loaded into the room as an edit, after the room's
unsaved version is kept as a copy beside the file, so that neither side is lost.

A room never creates its file, it only replaces it. A file deleted (through Jupyter, which
tells the room through :meth:`DocumentRoom.file_deleted`, or on disk, seen by the watcher) is
not written again: the room tells its clients, keeps the document's content in its history
(a ``deleted`` snapshot), and goes on serving the people still in it without saving.

Everything that touches the YDoc runs on the event loop; the store runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pycrdt
from channels.layers import get_channel_layer

from jupyter_ydjango import metrics
from jupyter_ydjango.conf import get_setting, notebook_root
from jupyter_ydjango.formats.builtin import DocumentFormat, FormatError
from jupyter_ydjango.formats.conversions import Converter, Imported, get_converter
from jupyter_ydjango.protocol import close_codes
from jupyter_ydjango.protocol.messages import create_raw_json_message
from jupyter_ydjango.rooms.pending import PendingChanges
from jupyter_ydjango.rooms.relay import REMOTE
from jupyter_ydjango.rooms.room import (
    HISTORY,
    ClosePeer,
    Peer,
    Room,
    SendFrame,
    get_registry,
    loaded_rooms,
)
from jupyter_ydjango.store import disk, lease, records, update_log
from jupyter_ydjango.store.contents import Files, files_of
from jupyter_ydjango.store.dispatch import run_db, run_io
from jupyter_ydjango.store.history import compact as compact_history
from jupyter_ydjango.store.paths import PathError
from jupyter_ydjango.store.records import DocumentInfo

logger = logging.getLogger(__name__)


#: How the error of a change on disk that could not be loaded begins.
OUTSIDE_CHANGE_ERROR = "{path} changed on disk, and the change could not be loaded"


class OutsideChangeNotLoaded(Exception):
    """A change of the file made outside the room could not be loaded yet."""


class LoadError(Exception):
    """A room that cannot be loaded; ``code`` is the websocket close code for its clients,
    ``summary`` a short sentence for them (at most 56 bytes), or empty."""

    def __init__(self, code: int, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.summary = summary




def converter() -> Converter:
    """The process pool that builds documents from files and renders them back, with
    ``YDJANGO_CONVERSION_PROCESSES`` workers."""
    return get_converter(get_setting("YDJANGO_CONVERSION_PROCESSES"))


class DocumentRoom(Room):
    """A room whose document is stored in the database and saved to a file."""

    def __init__(self, name: str, doc: pycrdt.Doc, *, document: DocumentInfo,
                 format: DocumentFormat, root: Path) -> None:
        super().__init__(name, doc)
        self.document = document
        self.format = format
        self.root = root
        #: Where the file is read and written: the contents manager (see
        #: :mod:`jupyter_ydjango.store.contents`).
        self.files: Files = files_of(root)
        self.save_delay: float = get_setting("YDJANGO_SAVE_DELAY")
        self.save_max_wait: float = get_setting("YDJANGO_SAVE_MAX_WAIT")
        self.poll_interval: float = get_setting("YDJANGO_FILE_POLL_INTERVAL")
        self.compact_after: int = get_setting("YDJANGO_COMPACT_AFTER")
        self.compact_idle: float = get_setting("YDJANGO_COMPACT_IDLE")
        #: When the file was last written by this room (epoch seconds), and the last error.
        self.last_saved: float | None = None
        self.save_error: str = ""
        #: Updates to log.
        self.pending: PendingChanges = PendingChanges()
        self._update_ids: list[int] = []
        self._changes = 0  # content changes so far
        self._saved_changes = 0  # content changes the file holds
        self._content_changed = asyncio.Event()
        self._file_lock = asyncio.Lock()
        self._disk_hash = ""  # the version of the file as this room last read or wrote it
        # the SHA-256 of that version's bytes as a save renders them ("": unknown)
        self._disk_data_hash = ""
        self._shown_hash = ""  # the hash the contents API gives for it (the frontend's)
        self._disk_signature: tuple[Any, ...] | None = None
        # the file's shape (what the document does not hold of it) and the hash of the file
        # it was taken from
        self._shape: Any = None
        self._shape_hash = ""
        self._written_signature: tuple[Any, ...] | None = None  # of this room's last write
        #: Why the file is not written, when the contents manager reports it not writable
        #: (the room is then read-only for everyone); empty otherwise.
        self.read_only_reason = ""
        self._last_change = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscriptions: list[Any] = []
        self._invalid = False  # the last save found the document invalid
        #: Whether the file was deleted: the room no longer writes it.
        self.deleted = document.deleted is not None
        self._missing_since: float | None = None  # when the watcher first missed the file
        #: This room's claim to write the file (one writer per document across processes).
        self.writer_id = uuid.uuid4().hex
        self.writer_lease = max(3.0, 5 * self.poll_interval)
        self._renew_at = 0.0  # monotonic time from which the lease held is renewed
        self._lease_until = 0.0  # monotonic time at which the lease last claimed runs out
        self._was_writer = False  # the answer of the last claim the database gave
        self._claim_failing = False  # the database cannot be asked who writes the file
        self._claim_retry_at = 0.0  # when to ask it again
        #: Why the update log cannot be written now; empty while it can.
        self.store_error = ""
        self._log_lock = asyncio.Lock()  # one batch of the log written at a time
        self._requested_save: asyncio.Future[str] | None = None  # see request_save
        self._request_lock = asyncio.Lock()
        #: Who the changes that server-side code makes are credited to (see
        #: :meth:`changes_by`).
        self.acting_for = ""

    @contextlib.contextmanager
    def changes_by(self, author: str) -> Iterator[None]:
        """Credit the changes server-side code makes meanwhile (a restore's) to ``author``
        (a user name) in the update log."""
        previous, self.acting_for = self.acting_for, author
        try:
            yield
        finally:
            self.acting_for = previous

    @property
    def path(self) -> Path:
        """The file's real path on disk (checked to be inside the root), where the contents
        manager keeps its files there."""
        return self.files.real_path(self.document.path)

    @property
    def accepts_edits(self) -> bool:
        """Not while the file is not writable: the room then serves it read-only."""
        return not self.read_only_reason

    #: Seconds a file must stay missing before the watcher takes it as deleted (a program
    #: that deletes a file and writes it again, such as ``git checkout``, takes far less).
    missing_grace = 1.0

    @property
    def unsaved(self) -> bool:
        """Whether the document has content changes the file does not hold."""
        return self._changes != self._saved_changes

    # --- lifecycle ----------------------------------------------------------------------

    async def on_load(self) -> None:
        try:
            if self.files.fast:
                self.files.real_path(self.document.path)
            hidden = await self.files.hidden(self.document.path)
        except PathError as exc:
            raise LoadError(close_codes.FORBIDDEN, str(exc)) from None
        if hidden:  # as if it did not exist: nothing sent
            raise LoadError(close_codes.NOT_FOUND, f"no file {self.document.path}")
        history = await run_db(update_log.load_history, self.document.id)
        imported = None
        if history.empty and self.deleted:  # never opened before its file was deleted
            raise LoadError(close_codes.NOT_FOUND, f"{self.document.path} was deleted")
        if history.empty:
            imported = await self._import()
        if imported is not None:
            await self._apply_import(imported.chunks)
            self.whole_document_is(imported.state)
        else:
            if history.empty:  # another process imported the file first
                history = await run_db(update_log.load_history, self.document.id)
            self._replay(history)
        self.format.bind(self.doc)
        for root in self.format.content_roots(self.doc):
            self._subscriptions.append((root, root.observe_deep(self._on_content_change)))
        await self._check_writable()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._write_log()),
            loop.create_task(self._autosave()),
            # a room loaded from history checks, in the background, that its file holds it (a
            # save may have been cut off, or the file changed while no room had it); a fresh
            # import is the file
            loop.create_task(self._watch(check_first=imported is None)),
        ]

    def on_change(self, update: bytes, origin: Any) -> None:
        if origin is HISTORY:
            return
        self._last_change = time.monotonic()
        if origin is not REMOTE:  # the room published it through the relay just before
            author = origin.author if isinstance(origin, Peer) else self.acting_for
            self.pending.published(update, self.relay, author)

    def on_incomplete(self, update: bytes, origin: Any) -> None:
        if origin is not REMOTE:  # logged as it came: it integrates once its base is loaded
            author = origin.author if isinstance(origin, Peer) else self.acting_for
            self.pending.published(update, self.relay, author)

    async def on_unload(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.flush()
        if self.unsaved and await self.is_writer():
            await self.save()
        if self._update_ids:
            await self._compact()
        self._renew_at = 0.0
        with contextlib.suppress(Exception):
            await run_db(lease.release_writer, self.document.id, self.writer_id)
        for root, subscription in self._subscriptions:
            with contextlib.suppress(Exception):
                root.unobserve(subscription)
        self._subscriptions = []
        self.format.unbind(self.doc)

    def join(self, send: SendFrame, close: ClosePeer, author: str = "",
             user: Mapping[str, str] | None = None) -> Peer:
        peer = super().join(send, close, author, user)
        if self.deleted:
            peer.push(create_raw_json_message(self._deleted_notice()))
        if self.read_only_reason:
            peer.push(create_raw_json_message(self._writable_notice()))
        return peer

    # --- loading ------------------------------------------------------------------------

    async def _read(self) -> disk.FileState:
        """The file, through the contents manager."""
        return await self.files.read(self.document.path, self.document.format,
                                     self.document.type)

    async def _import(self) -> Imported | None:
        """Import the file into an empty history: the document built, as updates; ``None`` if
        another process imported it first (then load its history)."""
        try:
            too_large = await self.files.too_large(self.document.path, self.document.type)
            if too_large:
                raise LoadError(close_codes.FILE_TOO_LARGE, too_large, "the file is too large")
            file = await self._read()
        except FileNotFoundError:
            raise LoadError(close_codes.NOT_FOUND, f"{self.document.path}: no such file") from None
        except PathError as exc:
            raise LoadError(close_codes.FORBIDDEN, str(exc)) from None
        except OSError as exc:
            raise LoadError(close_codes.LOAD_FAILED, f"{self.document.path}: {exc}") from None
        kind = (self.document.format, self.document.type)
        try:
            built = await converter().build(kind, file.data, self.document.path,
                                                file.shown_hash,
                                                others_waiting=self._others_present())
        except FormatError as exc:
            raise LoadError(close_codes.UNREADABLE, f"{self.document.path}: {exc}",
                            exc.summary) from None
        self._remember_shape(file.hash, built.shape)
        # through a manager that writes files in another form (a script), what a save renders
        # is known only once one did
        rendered = disk.sha256(file.data) if self.files.fast else ""
        snapshot_id = await run_db(update_log.import_file, self.document.id, built.state, file.hash,
                                   rendered)
        if snapshot_id is None:
            return None
        self._saw(file)
        logger.info("%s: imported %s (%d bytes)", self.name, self.document.path, len(file.data))
        self.document = _with_hash(self.document, file.hash)
        return built

    #: Passes of the event loop given to other work between two updates of an import.
    import_yield_passes = 16

    async def _apply_import(self, chunks: list[bytes]) -> None:
        """Apply an import's updates one after the other, letting other rooms run between
        them (a 5,000-cell notebook would otherwise hold the event loop for ~100 ms).

        An edit in another room takes a dozen steps through the loop on its way from one
        client to the others (the websocket, the bridge, the consumer, the room, each peer's
        sender), one step per pass: with a single pass between two updates, it would wait for
        an update's ~5 ms at each of them.
        """
        for chunk in chunks:
            self.apply_update(chunk, HISTORY)
            for _ in range(self.import_yield_passes):
                await asyncio.sleep(0)

    def _replay(self, history: update_log.History) -> None:
        for _, state in history.snapshots:
            self.apply_update(state, HISTORY)
        if len(history.snapshots) == 1 and not history.updates:
            self.whole_document_is(history.snapshots[0][1])
        updates = [update for _, data in history.updates
                   for update in update_log.unpack_updates(data)]
        if updates:
            # the log's many small updates merged into one apply much faster than one by one
            # (a big snapshot is applied alone: merging it would cost more than it saves)
            self.apply_update(updates[0] if len(updates) == 1 else pycrdt.merge_updates(*updates),
                              HISTORY)
        self._update_ids.extend(row_id for row_id, _ in history.updates)

    # --- the update log -----------------------------------------------------------------

    #: Seconds the log writer gathers updates before writing them as one row.
    log_batch_delay = 0.05

    async def _write_log(self) -> None:
        """Write queued updates, as one row per batch, in order; retried until written (the
        room stays loaded meanwhile: see :meth:`can_unload`)."""
        def failed(exc: Exception) -> bool:
            metrics.LOG_WRITE_FAILURES.inc()
            if not self.store_error:
                logger.error("%s: cannot write the update log (%d changes kept, retrying): %r",
                             self.name, len(self.pending), exc)
                self._notify({"type": "store", "status": "failing", "error": str(exc)})
            self.store_error = f"changes cannot be stored: {exc}"
            return True  # kept until the database is back

        def recovered() -> None:
            logger.info("%s: the update log is written again", self.name)
            self._notify({"type": "store", "status": "ok"})
            self.store_error = ""

        async def written() -> None:
            if len(self._update_ids) >= self.compact_after:
                await self._compact()

        await self.pending.write(self.flush, gather=lambda: self.log_batch_delay,
                                 failed=failed, recovered=recovered, written=written)

    async def flush(self) -> None:
        """Write every queued update to the log now (one batch at a time, whoever asks:
        the log writer and an unload)."""
        async with self._log_lock:
            while self.pending:
                batch = self.pending.batch()
                row_id = await run_db(update_log.append_updates, self.document.id, batch,
                                      self.pending.authors(len(batch)))
                self.pending.stored(len(batch))
                self._update_ids.append(row_id)

    async def can_unload(self) -> bool:
        """Not while changes wait to be stored: they are written first, and a room whose
        database is down stays loaded, and keeps them, until it is back."""
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("%s: stays loaded, %d changes not stored yet: %r", self.name,
                           len(self.pending), exc)
            return False
        return True

    async def _compact(self, reason: str = "") -> None:
        """Fold the update log into snapshots, one per burst of edits (see
        :mod:`jupyter_ydjango.store.history`); with ``reason``, the last one is marked with it."""
        known = len(self._update_ids)  # written before: folded now, or by another process
        try:
            folded = await compact_history(self.document.id, reason, self.format)
        except Exception as exc:
            logger.error("%s: compaction failed (will retry): %r", self.name, exc)
            return
        del self._update_ids[:known]
        logger.debug("%s: folded %d rows into snapshots", self.name, len(folded))

    # --- the file's shape ---------------------------------------------------------------

    def _remember_shape(self, file_hash: str, shape: Any) -> None:
        """Keep the shape of the file just parsed; its schema deviations are logged (the
        file is opened anyway, as Jupyter opens it)."""
        self._shape, self._shape_hash = shape, file_hash
        deviations = getattr(shape, "deviations", ())
        if deviations:
            logger.warning("%s: %s does not follow its nbformat schema (%d deviations; kept as "
                           "they are, as Jupyter does), e.g. %s", self.name, self.document.path,
                           len(deviations), "; ".join(i.message[:200] for i in deviations[:3]))

    async def _file_shape(self) -> Any:
        """The shape of the file the room holds (read from it, once, when the room was
        loaded from its history); ``None`` when unknown."""
        if self._shape_hash and self._shape_hash == self._disk_hash:
            return self._shape
        try:
            file = await self._read()
            content = await run_io(self.format.parse, file.data)
        except (OSError, PathError, FormatError):
            return None
        self._remember_shape(file.hash, self.format.shape(content))
        return self._shape

    async def _render(self, shape: Any = None, *, own_shape: bool = True) -> bytes:
        """The file's bytes for what the document holds now, in the file's shape (or in
        ``shape`` without ``own_shape``). :raises FormatError:"""
        if own_shape:
            shape = await self._file_shape()
        # only the dump is made here, on the event loop; the rest runs in the converter
        kind = (self.document.format, self.document.type)
        return await converter().render(kind, self.format.dump(self.doc), shape,
                                            others_waiting=self._others_present())

    def _others_present(self) -> bool:
        """Whether people are in other documents of this process (a conversion on its
        threads would stall their edits; awareness-only rooms such as JupyterLab's global
        one do not count)."""
        return any(room is not self and room.peers and isinstance(room, DocumentRoom)
                   for room in loaded_rooms())

    # --- saving -------------------------------------------------------------------------

    def _on_content_change(self, _events: Any) -> None:
        if self._origin is HISTORY:
            return
        self._changes += 1
        self._content_changed.set()

    #: Seconds between two claims of the lease while the database fails them (each may
    #: wait for a lock as long as the database's timeout).
    claim_retry = 5.0

    #: The longest wait, in seconds, between two attempts of a save that keeps failing.
    save_retry_max = 30.0

    async def _autosave(self) -> None:
        """Save after ``save_delay`` of quiet, or ``save_max_wait`` after the first change.

        Nothing ends it while the room is loaded: a failed save (whatever the cause: the
        disk, the database, the converter) is logged, shown to the clients, and tried again
        after a backoff that doubles up to :attr:`save_retry_max`.
        """
        loop = asyncio.get_running_loop()
        retry = self.save_delay
        while True:
            await self._content_changed.wait()
            deadline = loop.time() + self.save_max_wait
            while True:
                self._content_changed.clear()
                timeout = min(self.save_delay, deadline - loop.time())
                if timeout <= 0:
                    break
                try:
                    await asyncio.wait_for(self._content_changed.wait(), timeout)
                except asyncio.TimeoutError:
                    break
            self._content_changed.clear()
            try:
                if self.deleted or not await self.is_writer():
                    continue  # nothing to write, or another process's room writes the file
                status = await self.save()
            except Exception as exc:
                status = await self._save_failed(
                    f"not saved ({type(exc).__name__}: {exc}); retrying", exc)
            if status == "failed" and self.unsaved and not self._invalid and not self.deleted:
                await asyncio.sleep(retry)  # try again, less and less often
                retry = min(max(retry, 0.1) * 2, self.save_retry_max)
                self._content_changed.set()
            else:
                retry = self.save_delay

    async def is_writer(self) -> bool:
        """Whether this room writes the file (taking the lease, or renewing it once half of
        it has passed: no database write every poll).

        While the database cannot be asked, the room that held the lease goes on writing:
        until its lease runs out, or for as long as the outage lasts on SQLite, whose
        database is on this machine (a single embedded server needs no lease to write its
        own file; no other process can take the lease from a database it cannot reach
        either). Any other room does not write.
        """
        started = time.monotonic()
        if started < self._renew_at:
            return True
        if self._claim_failing and started < self._claim_retry_at:
            return self._outage_writer(started)  # asked again a moment later
        try:
            held = await run_db(lease.claim_writer, self.document.id, self.writer_id,
                                self.writer_lease)
        except Exception as exc:
            held = self._outage_writer(started)
            if not self._claim_failing:
                logger.error("%s: cannot ask the database who writes the file (%s): %r",
                             self.name, "this room goes on" if held else "not written", exc)
            self._claim_failing = True
            self._claim_retry_at = time.monotonic() + self.claim_retry
            return held
        if self._claim_failing:
            logger.info("%s: the database answers again", self.name)
            self._claim_failing = False
        self._was_writer = held
        self._lease_until = started + self.writer_lease if held else 0.0
        self._renew_at = started + self.writer_lease / 2 if held else 0.0
        return held

    def _outage_writer(self, now: float) -> bool:
        """Whether this room writes the file while the database cannot be asked."""
        return self._was_writer and (now < self._lease_until or records.database_is_local())

    @property
    def database_failing(self) -> bool:
        """Whether the database failed the room's last write of the log or claim."""
        return bool(self.store_error) or self._claim_failing

    async def save(self) -> str:
        """Save the document to its file now: ``"success"`` once the file holds the document
        (written now, or already by an earlier save), ``"failed"`` on a real failure (the
        error is logged, recorded and sent to the clients).

        Where another process's room writes the file, wait (up to the save delay and 2 s)
        for the file to hold this document: ``"success"`` if it does, else ``"skipped"``.
        """
        if self.deleted:
            return "failed"  # the clients were told; nothing is written any more
        if not await self.is_writer():
            return await self._wait_for_writer()
        async with self._file_lock:
            changes = self._changes
            try:
                data = await self._render()
            except FormatError as exc:
                self._invalid = True
                return await self._save_failed(f"not saved, the document is invalid: {exc}")
            self._invalid = False
            data_hash = disk.sha256(data)
            if data_hash in (self._disk_hash, self._disk_data_hash):
                self._saved_changes = changes
                self._mark_clean(self._shown_hash)
                return "success"  # the file holds the document already
            # a change on disk not seen yet is handled first: never overwrite it unseen
            if await self._check_file_locked():
                # the room now holds the file's version (its own is kept beside the file)
                return "skipped" if self.unsaved else "success"
            if self.deleted or self._missing_since is not None:
                return "failed"  # never make the file again
            if self.read_only_reason:
                return await self._save_failed(f"not saved: {self.read_only_reason}")
            try:
                file = await self.files.write(self.document.path, self.document.format,
                                              self.document.type, data)
            except (FileNotFoundError, PathError):
                # deleted meanwhile, or replaced by a link (that may lead out of the root,
                # and is never written through): the watcher decides
                self._missing_since = time.monotonic()
                return "failed"
            except PermissionError as exc:  # made read-only since the last check
                await self._check_writable()
                return await self._save_failed(f"cannot write {self.document.path}: {exc}")
            except OSError as exc:
                return await self._save_failed(f"cannot write {self.document.path}: {exc}")
            try:
                await run_db(records.record_save, self.document.id, file.hash, len(data), "",
                             data_hash)
            except Exception as exc:  # the file is written; only the record failed
                logger.error("%s: saved, but cannot record the save: %r", self.name, exc)
            self._saw(file, data_hash)
            self._written_signature = file.signature
            self._shape_hash = file.hash  # written in the shape the file had
            self._saved_changes = changes
            self.last_saved = time.time()
            self.save_error = ""
            metrics.SAVES.inc()
            self._mark_clean(file.shown_hash)
            logger.info("%s: saved %s (%d bytes)", self.name, self.document.path, len(data))
            return "success"

    async def request_save(self) -> str:
        """:meth:`save`, for a client's save request: at most one such save runs and one
        waits. A request that comes while one waits shares it (the save starts after the
        request, so it writes what the requester had sent); however many requests come, a
        room renders its document at most once per save that runs."""
        if self._requested_save is None:
            self._requested_save = asyncio.ensure_future(self._run_requested_save())
        return await asyncio.shield(self._requested_save)

    async def _run_requested_save(self) -> str:
        async with self._request_lock:
            self._requested_save = None  # requests from now on wait for the next save
            return await self.save()

    async def _wait_for_writer(self) -> str:
        try:
            wanted = disk.sha256(await self._render())
        except FormatError:
            return "failed"
        deadline = time.monotonic() + self.save_delay + 2
        while time.monotonic() < deadline:
            info = await run_db(records.get_document, self.document.id)
            if info is not None and wanted in (info.file_hash, info.content_hash):
                self._saved_changes = self._changes
                return "success"
            await asyncio.sleep(0.1)
        return "skipped"

    async def _save_failed(self, error: str, exc: BaseException | None = None) -> str:
        metrics.SAVE_FAILURES.inc()
        logger.error("%s: %s", self.name, error, exc_info=exc)
        self.save_error = error
        with contextlib.suppress(Exception):
            await run_db(records.record_save, self.document.id, "", 0, error)
        self._notify({"type": "save", "status": "failed", "error": error})
        return "failed"

    def _saw(self, file: disk.FileState, data_hash: str = "") -> None:
        """The file is at version ``file``: read, or written with bytes of ``data_hash``
        (read on disk, the bytes are the file's; through a manager that may write another
        form, the bytes a save rendered are known only when given)."""
        self._disk_hash, self._disk_signature = file.hash, file.signature
        if not data_hash and self.files.fast:
            data_hash = disk.sha256(file.data)
        self._disk_data_hash = data_hash
        self._shown_hash = file.shown_hash

    async def _check_writable(self) -> None:
        """Whether the contents manager lets the file be written: if not, the room serves it
        read-only (its clients are told, and no save is tried) until it does again."""
        try:
            version = await self.files.stat(self.document.path, self.document.type)
        except Exception:  # gone or unreadable: the watcher decides
            return
        if version is None:
            return
        self._set_writable(version.writable)

    def _set_writable(self, writable: bool) -> None:
        reason = "" if writable else "the file is read-only"
        if reason == self.read_only_reason:
            return
        self.read_only_reason = reason
        if reason:
            logger.info("%s: %s is not writable; the room serves it read-only", self.name,
                        self.document.path)
        else:
            logger.info("%s: %s is writable again", self.name, self.document.path)
        self._notify(self._writable_notice())

    def _writable_notice(self) -> dict[str, Any]:
        reason = self.read_only_reason
        return {"type": "file", "status": "read-only" if reason else "writable",
                "path": self.document.path, "reason": reason or None}

    def _mark_clean(self, file_hash: str) -> None:
        """The file (with hash ``file_hash``) holds the document as of the last save: tell the
        frontend, which compares ``state.hash`` with the file's before it saves."""
        if self.unsaved:
            self.format.set_state(self.doc, hash=file_hash)
        else:
            self.format.set_state(self.doc, dirty=False, hash=file_hash)

    # --- changes on disk ----------------------------------------------------------------

    async def _watch(self, check_first: bool) -> None:
        """Poll the file (as its writer); with ``check_first``, check it against the loaded
        history as soon as this room is the writer."""
        was_writer = True
        while True:
            try:
                writer = await self.is_writer()
                if writer and check_first:
                    await self._check_file(loading=True)
                    check_first = False
                elif writer:
                    if not was_writer and self.unsaved:
                        self._content_changed.set()  # took over from a writer that went away
                    await self._check_file()
                else:
                    async with self._file_lock:
                        await self._refresh_document(writer=False)
                was_writer = writer
            except OutsideChangeNotLoaded as exc:
                if self.save_error != str(exc):  # said once; tried again at every check
                    await self._save_failed(str(exc), exc)
            except Exception:
                logger.exception("%s: error while checking the file", self.name)
            if (self._update_ids and time.monotonic() - self._last_change > self.compact_idle
                    and not self.pending):
                await self._compact()
            await asyncio.sleep(self.poll_interval)

    async def _check_file(self, loading: bool = False) -> bool:
        async with self._file_lock:
            return await self._check_file_locked(loading)

    async def _refresh_document(self, writer: bool) -> None:
        """Follow the document's row: a rename, a deletion (recorded by another process, or
        by the API), a restored file."""
        info = await run_db(records.get_document, self.document.id)
        if info is None:
            return
        if info.path != self.document.path:
            logger.info("%s: renamed to %s", self.name, info.path)
            self.format.set_state(self.doc, path=info.path)
        self.document = info
        if info.deleted is not None and not self.deleted:
            await self._deleted_locked(f"{info.path} was deleted", writer=writer)
        elif info.deleted is None and self.deleted:
            self.deleted = False
            self._missing_since = None
            self._disk_hash = info.file_hash
            logger.info("%s: %s was restored", self.name, info.path)
            self._notify({"type": "file", "status": "restored", "path": info.path})
            if self.unsaved:
                self._content_changed.set()  # what was typed since the restored content

    async def file_deleted(self) -> None:
        """The file was deleted (Jupyter said so): stop writing it and tell the clients."""
        async with self._file_lock:
            if not self.deleted:
                await self._deleted_locked(f"{self.document.path} was deleted", writer=True)

    async def _deleted_locked(self, why: str, *, writer: bool) -> None:
        self.deleted = True
        self._missing_since = None
        logger.info("%s: %s; the room stops saving it", self.name, why)
        if writer and self.files.fast:
            # A save that was writing when the file was deleted may have made it again:
            # the file is still the one this room wrote (same inode, time and size).
            with contextlib.suppress(OSError, PathError):
                path = self.path
                signature = await run_io(disk.stat_file, path)
                if signature is not None and signature == self._written_signature:
                    await run_io(path.unlink)
                    logger.info("%s: removed %s, written again by a save", self.name, path)
        self._notify(self._deleted_notice())
        # The last content, as a snapshot of its own (admin, restore): what the file held
        # when it was deleted, and what the people still in the room write afterwards is in
        # the update log.
        try:
            await self.flush()
            await self._compact(reason="deleted")
        except Exception as exc:
            logger.error("%s: cannot store the deleted document's content: %r", self.name, exc)

    def _deleted_notice(self) -> dict[str, Any]:
        return {"type": "file", "status": "deleted", "path": self.document.path}

    async def _check_file_locked(self, loading: bool = False) -> bool:
        """Look for a change of the file made by someone else and load it; whether one was.

        A file missing for :attr:`missing_grace` seconds is taken as deleted.
        """
        if not self.database_failing:  # else the file is checked and saved without it
            try:
                await self._refresh_document(writer=True)
            except Exception as exc:
                logger.warning("%s: cannot read the document's row: %r", self.name, exc)
        if self.deleted:
            return False
        # The path is resolved again at every check, and each read and stat refuses a link
        # put in the file's place since: a file replaced by a link out of the root is gone
        # from the root, as a deleted one is (its room never reads or writes through it).
        try:
            version = await self.files.stat(self.document.path, self.document.type)
            signature = None if version is None else version.signature
            file = None
            if signature is not None and (signature != self._disk_signature or loading):
                file = await self._read()
        except PathError:
            signature, gone = None, "was replaced by a link out of the notebook root"
        except FileNotFoundError:
            signature, gone = None, "was deleted on disk"
        except OSError as exc:
            logger.debug("%s: cannot check the file: %r", self.name, exc)
            return False
        else:
            gone = "was deleted on disk"
        if signature is None:
            now = time.monotonic()
            if self._missing_since is None:
                self._missing_since = now
            elif now - self._missing_since >= self.missing_grace:
                await run_db(records.mark_document_deleted, self.document.id)
                await self._deleted_locked(f"{self.document.path} {gone}", writer=True)
            return False
        self._missing_since = None
        assert version is not None
        self._set_writable(version.writable)
        if file is None:
            return False
        if file.hash in (self._disk_hash, self.document.file_hash):
            # ours, or written by another process of this room
            self._saw(file, self._disk_data_hash if file.hash == self._disk_hash else
                      self.document.content_hash)
            if loading:
                await self._check_saved()
            return False
        self._disk_signature = file.signature
        await self._load_from_disk(file)
        return True

    async def _check_saved(self) -> None:
        """At load: whether the file holds the document (a save may have been cut off).

        Through a contents manager that writes files in another form (a script), only once a
        save said what it renders (a file opened and not saved since is taken as holding
        the document: an edit made after it that no save wrote waits for the next edit).
        """
        if not self._disk_data_hash:
            return
        try:
            data = await self._render()
        except FormatError:
            return
        if disk.sha256(data) != self._disk_data_hash:
            self._changes += 1  # the history holds changes the file lacks: save them
            self._content_changed.set()

    async def _load_from_disk(self, file: disk.FileState) -> None:
        """Someone else changed the file: keep the room's unsaved version, load theirs.

        If that fails (its safety copy cannot be written, say), the change is given back:
        the file is not taken as seen, so nothing overwrites it, and it is loaded at the next
        check. :raises OutsideChangeNotLoaded:
        """
        previous_hash = self.document.file_hash
        previous = (self._disk_hash, self._disk_data_hash, self._shown_hash)
        previous_shape = self._shape if self._shape_hash == self._disk_hash else None
        # what the file held before, as rendered (by this room, or any room's last save)
        previous_rendered = {h for h in (self.document.content_hash, self._disk_data_hash,
                                         previous_hash) if h}
        claimed = await run_db(lease.claim_file_hash, self.document.id, previous_hash, file.hash)
        self.document = _with_hash(self.document, file.hash)
        self._saw(file)
        if not claimed:  # another process of this room handles it; its edit reaches us
            return
        try:
            await self._load_claimed(file, previous_rendered, previous_shape)
        except Exception as exc:
            self.document = _with_hash(self.document, previous_hash)
            self._disk_hash, self._disk_data_hash, self._shown_hash = previous
            self._disk_signature = None
            with contextlib.suppress(Exception):
                await run_db(lease.claim_file_hash, self.document.id, file.hash, previous_hash)
            raise OutsideChangeNotLoaded(
                OUTSIDE_CHANGE_ERROR.format(path=self.document.path)
                + f" ({type(exc).__name__}: {exc}); the room does not write the file until "
                "it is") from exc

    async def _load_claimed(self, file: disk.FileState, previous_rendered: set[str],
                            previous_shape: Any) -> None:
        """Load a change on disk that this room claimed (see :meth:`_load_from_disk`);
        ``previous_rendered``: hashes of the bytes the file held before, as rendered."""
        try:
            content = await run_io(self.format.parse, file.data)
        except FormatError as exc:
            copy = await self._write_copy("unreadable", file.data)
            await self._save_failed(
                f"{self.document.path} was changed on disk into an unreadable file ({exc}); "
                f"it is kept as {copy} and the room's version stays"
            )
            self._changes += 1  # write the room's version back
            self._content_changed.set()
            return
        try:
            ours = await self._render(previous_shape, own_shape=False)
        except FormatError:
            ours = None
        unsaved = ours is not None and disk.sha256(ours) not in (
            previous_rendered | {disk.sha256(file.data)})
        if unsaved and (self.files.fast or self.unsaved):
            # the room holds changes that were never in the file: keep them (through a
            # manager that writes another form, whose renderings compare with nothing, the
            # room's own count of changes not saved says)
            copy = await self._write_copy("unsaved", ours)
            logger.warning("%s: %s changed on disk; the room's unsaved version is kept as %s",
                           self.name, self.document.path, copy)
        self.format.replace(self.doc, content)
        self._remember_shape(file.hash, self.format.shape(content))
        self._saved_changes = self._changes
        self._mark_clean(file.shown_hash)
        if self.save_error.startswith(OUTSIDE_CHANGE_ERROR.format(path=self.document.path)):
            self.save_error = ""  # loaded at last
        written = datetime.fromtimestamp(file.modified, tz=timezone.utc)
        with contextlib.suppress(Exception):  # only the "last written" shown to people
            await run_db(records.record_outside_write, self.document.id, written)
        logger.info("%s: loaded the change on disk of %s", self.name, self.document.path)

    async def _write_copy(self, kind: str, data: bytes) -> str:
        """Keep ``data`` as a copy beside the file (``name.{kind}-{time}.ext``): its path."""
        return await self.files.write_copy(self.document.path, self.document.format,
                                           self.document.type, kind, data)

    # --- clients ------------------------------------------------------------------------

    def _notify(self, message: dict[str, Any]) -> None:
        frame = create_raw_json_message(message)
        for peer in self.peers:
            peer.push(frame)

    def status(self) -> dict[str, Any]:
        """What the status API reports about this loaded room."""
        return {
            "loaded": True,
            "connections": len(self.peers),
            "unsaved": self.unsaved and not self.deleted,
            "saveError": self.save_error or None,
            "storeError": self.store_error or None,
            "deleted": self.deleted,
            "fileReadOnly": self.read_only_reason or None,
        }


def _with_hash(info: DocumentInfo, file_hash: str) -> DocumentInfo:
    return dataclasses.replace(info, file_hash=file_hash)


def new_room(document: DocumentInfo, doc_format: DocumentFormat) -> DocumentRoom:
    """A room of ``document``, not loaded yet."""
    return DocumentRoom(document.room_name, pycrdt.Doc(), document=document, format=doc_format,
                        root=notebook_root())


#: Rooms being loaded ahead of their first client (kept referenced until done).
_preloading: set[asyncio.Task[None]] = set()


def preload(document: DocumentInfo, doc_format: DocumentFormat) -> None:
    """Start loading a document's room ahead of its first client.

    A client asks for a session, then opens the room's websocket: started at the session
    request, the load runs while the answer travels back and the websocket is set up, and
    the client joins a room loading or loaded. A room nobody joins is unloaded after the idle
    delay, as any room; a load that fails is left to the client's own connection, which
    loads again and reports why. A worker of ``serve --workers N`` preloads only the rooms
    it owns: the others' clients go to another worker.
    """
    task = asyncio.get_running_loop().create_task(_preload(document, doc_format))
    _preloading.add(task)
    task.add_done_callback(_preloading.discard)


async def _preload(document: DocumentInfo, doc_format: DocumentFormat) -> None:
    async def make() -> DocumentRoom:
        return new_room(document, doc_format)

    registry = get_registry(get_channel_layer())
    if not registry.owns(document.room_name):  # another worker will hold it
        return
    try:
        room = await registry.acquire(document.room_name, make)
    except Exception as exc:
        logger.debug("%s: not loaded ahead of its client: %r", document.room_name, exc)
        return
    registry.release(room)
