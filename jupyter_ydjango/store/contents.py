"""A room's file, read, written, watched and copied through a Jupyter contents manager.

The contents manager is the file system of every room: what Jupyter's contents API serves is
what a room opens, and a room's save is a contents-manager save, so that the manager's types,
formats, validation, save hooks, checkpoints, permissions and hidden-file rules hold in rooms
as they do in Jupyter. The manager is:

* embedded, the Jupyter server's own (:func:`use_contents_manager`): jupytext's, a hybrid
  one, one backed by S3 or a database, sync or async;
* in a remote service, one the service makes over its notebook directory
  (``YDJANGO_CONTENTS_MANAGER_CLASS`` and ``YDJANGO_CONTENTS_MANAGER_OPTIONS``), Jupyter's
  own file manager by default.

Rooms work on the bytes a file holds (the notebook's JSON, a text file's text): a model's
content is turned into those bytes (:func:`model_bytes`) and back (:func:`bytes_model`).
A version of a file is named by the manager's ``last_modified`` and ``size``
(:attr:`~jupyter_ydjango.store.FileState.signature`): a manager such as jupytext's gives a
notebook read from a script new cell ids at every read, and the modification time of a
paired notebook is the latest of its files', so the content's hash would name no version.

The fast path. Where the manager is provably Jupyter's stock file manager (one of its four
classes exactly, serving this root, with no save hook), files are read and written on disk
directly, in threads, as bytes: the manager would do the same, plus a model round trip.
Measured on the 1.7 MB ``pdsh-05.11`` notebook: the manager's ``get`` 11 ms, its ``save``
17 ms, and 13 ms to turn a model into bytes and back, against 2 ms and 4 ms to read and
write the bytes; nbformat's work there runs on the event loop, where the fast path leaves
all parsing to the conversion worker. There the version is the file's bytes' SHA-256, and
its signature ``(st_mtime_ns, st_size, st_ino)``. Anything else, hooks included, goes
through the manager. The check runs at every operation, so that a hook registered later
takes effect at once.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nbformat
from django.utils.module_loading import import_string
from jupyter_server.utils import ensure_async

from jupyter_ydjango.conf import get_setting, notebook_root
from jupyter_ydjango.store import disk
from jupyter_ydjango.store.disk import FileState
from jupyter_ydjango.store.dispatch import run_io
from jupyter_ydjango.store.paths import hidden_by, resolve_in_root

__all__ = [
    "FileVersion",
    "Files",
    "bytes_model",
    "contents_manager",
    "files_of",
    "is_stock",
    "manager_format",
    "manager_type",
    "model_bytes",
    "use_contents_manager",
]

#: Jupyter's file contents managers, whose behaviour the fast path reproduces.
STOCK_MANAGERS = frozenset({
    "jupyter_server.services.contents.filemanager.FileContentsManager",
    "jupyter_server.services.contents.filemanager.AsyncFileContentsManager",
    "jupyter_server.services.contents.largefilemanager.LargeFileManager",
    "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager",
})

_source: Callable[[], Any] | None = None  # the Jupyter server's manager, embedded
_own: dict[Path, Any] = {}  # the managers this process made (remote), by root


def use_contents_manager(source: Callable[[], Any] | None) -> None:
    """Serve the notebook root's files through the manager ``source()`` returns (embedded:
    the Jupyter server's; a callable, because an extension such as jupytext replaces the
    server's manager while the extensions load). ``None``: the configured one again."""
    global _source
    _source = source


def contents_manager(root: Path | None = None) -> Any:
    """The contents manager of the files under ``root`` (default: the notebook root): the
    one given to :func:`use_contents_manager` for the notebook root, else one made once
    from ``YDJANGO_CONTENTS_MANAGER_CLASS`` over ``root``."""
    served = notebook_root()
    root = served if root is None else root
    if _source is not None and root == served:
        return _source()
    if root not in _own:
        _own[root] = _make_manager(root)
    return _own[root]


def _make_manager(root: Path) -> Any:
    """``YDJANGO_CONTENTS_MANAGER_CLASS`` over ``root``, with the traits of
    ``YDJANGO_CONTENTS_MANAGER_OPTIONS`` (a dict, or its JSON)."""
    cls = import_string(get_setting("YDJANGO_CONTENTS_MANAGER_CLASS"))
    options = get_setting("YDJANGO_CONTENTS_MANAGER_OPTIONS")
    if isinstance(options, str):
        options = json.loads(options or "{}")
    return cls(**{"root_dir": str(root),
                  "allow_hidden": bool(get_setting("YDJANGO_ALLOW_HIDDEN")), **options})


def is_stock(manager: Any, root: Path) -> bool:
    """Whether ``manager`` is provably Jupyter's stock file manager over ``root``: exactly
    one of its classes, with no save hook (the trait, or one registered by
    ``register_pre_save_hook``, which Jupyter keeps in lists it does not expose)."""
    cls = type(manager)
    if f"{cls.__module__}.{cls.__qualname__}" not in STOCK_MANAGERS:
        return False
    if manager.pre_save_hook or manager.post_save_hook:
        return False
    if getattr(manager, "_pre_save_hooks", ()) or getattr(manager, "_post_save_hooks", ()):
        return False
    try:
        return _resolved(str(manager.root_dir)) == root
    except (OSError, TypeError, ValueError):
        return False


@functools.lru_cache(maxsize=16)
def _resolved(directory: str) -> Path:
    """``directory`` with its links resolved, once: the check above runs at every file
    operation of every room (each poll), and a root does not move while it is served."""
    return Path(directory).resolve()


# --- models and bytes ---------------------------------------------------------------------


def manager_type(doc_type: str) -> str:
    """The contents type a document type is read and saved as: notebooks as notebooks,
    everything else as a file (the manager knows no other types)."""
    return "notebook" if doc_type == "notebook" else "file"


def manager_format(doc_format: str, doc_type: str) -> str:
    """The contents format of a document's file: JSON for notebooks, else text (or base64)."""
    if doc_type == "notebook":
        return "json"
    return "base64" if doc_format == "base64" else "text"


def model_bytes(model: dict[str, Any]) -> bytes:
    """The bytes of a model's content as the room reads them: a notebook as JSON (Jupyter's
    serialisation: one-space indentation, sorted keys), a text file's text as UTF-8."""
    content = model.get("content")
    if model.get("type") == "notebook":
        return (json.dumps(content, ensure_ascii=False, indent=1, sort_keys=True)
                + "\n").encode()
    if model.get("format") == "base64":
        return base64.b64decode(content or b"")
    return (content or "").encode()


def bytes_model(data: bytes, doc_format: str, doc_type: str) -> dict[str, Any]:
    """The model a save sends the manager for the file's ``data``.

    :raises ValueError: a notebook's data is not JSON; a text file's is not UTF-8.
    """
    ctype, cformat = manager_type(doc_type), manager_format(doc_format, doc_type)
    if ctype == "notebook":
        # as Jupyter reads a notebook: multi-line strings joined (jupytext, hooks and other
        # managers expect a source as one string)
        try:
            content: Any = nbformat.reads(data.decode(), as_version=nbformat.NO_CONVERT)
        except nbformat.reader.NotJSONError as exc:
            raise ValueError(str(exc)) from None
    elif cformat == "base64":
        content = base64.b64encode(data).decode("ascii")
    else:
        content = data.decode()
    return {"type": ctype, "format": cformat, "content": content}


def _modified(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return float(value or 0.0)


def _model_signature(model: dict[str, Any]) -> tuple[str, Any]:
    modified = model.get("last_modified")
    stamp = modified.isoformat() if isinstance(modified, datetime) else str(modified)
    return (stamp, model.get("size"))


def _version_hash(signature: tuple[Any, ...]) -> str:
    # 64 characters, as a SHA-256 in hex: the size of the column that keeps it
    return "v:" + hashlib.sha256(repr(signature).encode()).hexdigest()[:62]


@dataclass(frozen=True)
class FileVersion:
    """What a cheap look at a file says: its version's signature, and whether the manager
    lets it be written."""

    signature: tuple[Any, ...]
    writable: bool
    #: The hash the contents API gives (``""``: none, or not asked for).
    api_hash: str = ""
    #: The file's size in bytes, where the manager tells it.
    size: int | None = None


# --- one room's file access -----------------------------------------------------------------


class Files:
    """Access to the files under ``root`` through the contents manager (see the module).

    Every method takes an API path (relative, ``/``-separated); a document's ``doc_format``
    and ``doc_type`` say how its file is read (``"json"``/``"notebook"``...).
    """

    def __init__(self, root: Path, manager: Callable[[], Any] | None = None) -> None:
        self.root = root
        self._manager = manager

    @property
    def manager(self) -> Any:
        """The contents manager now (see :func:`contents_manager`)."""
        return self._manager() if self._manager is not None else contents_manager(self.root)

    @property
    def fast(self) -> bool:
        """Whether files are read and written on disk directly now (see the module)."""
        return is_stock(self.manager, self.root)

    def real_path(self, api_path: str) -> Path:
        """The file on disk (fast path). :raises PathError: outside the root."""
        return resolve_in_root(self.root, api_path)

    async def exists(self, api_path: str) -> bool:
        """Whether ``api_path`` is a file (not a folder) the manager serves.

        :raises PathError: outside the root (fast path: a link that leads out of it).
        """
        if self.fast:
            return self.real_path(api_path).is_file()
        manager = self.manager
        try:
            return bool(await ensure_async(manager.file_exists(api_path)))
        except Exception:  # the manager refuses the path: no such file for it
            return False

    async def document_path(self, api_path: str, doc_type: str) -> str:
        """The path of the document a notebook file opens: itself, or, for a file of a
        notebook paired by jupytext (``x.ipynb`` and ``x.py``), the pair's notebook, so
        that every file of a pair opens one document, which saves them all.

        jupytext's manager learns a pair when it reads one of its files
        (``paired_notebooks``); a file it has not read yet is read once here.
        """
        manager = self.manager
        pairs = getattr(manager, "paired_notebooks", None)
        if doc_type != "notebook" or not isinstance(pairs, dict) or self.fast:
            return api_path
        try:
            from jupytext.formats import long_form_multiple_formats
            from jupytext.paired_paths import paired_paths
        except ImportError:
            return api_path
        if api_path not in pairs:
            try:
                await ensure_async(manager.get(api_path, content=True, type="notebook"))
            except Exception:  # not readable as a notebook: the room says why
                return api_path
        if api_path not in pairs:
            return api_path
        fmt, formats = pairs[api_path]
        try:
            paths = [path for path, _ in paired_paths(
                api_path, fmt, long_form_multiple_formats(formats))]
        except Exception:  # an inconsistent pair: jupytext says why when it reads it
            return api_path
        notebooks = [path for path in paths if path.endswith(".ipynb")]
        return (notebooks or paths or [api_path])[0]

    async def hidden(self, api_path: str) -> bool:
        """Whether the manager hides the file (see :func:`~.paths.hidden_by`)."""
        return await hidden_by(self.manager, api_path)

    async def stat(self, api_path: str, doc_type: str,
                   with_hash: bool = False) -> FileVersion | None:
        """The file's version and writability, without its content (``with_hash``: and the
        hash the contents API gives for it); ``None`` if it does not exist.

        :raises PathError: (fast path) it was replaced by a link.
        """
        if self.fast:
            found = await run_io(disk.stat_writable, self.real_path(api_path))
            if found is None:
                return None
            signature, writable = found
            return FileVersion(signature, writable, size=signature[1])
        manager = self.manager
        if not await ensure_async(manager.file_exists(api_path)):
            return None
        model = await _get(manager, api_path, with_hash, content=False,
                           type=manager_type(doc_type))
        size = model.get("size")
        return FileVersion(_model_signature(model), bool(model.get("writable", True)),
                           model.get("hash") or "", size if isinstance(size, int) else None)

    async def too_large(self, api_path: str, doc_type: str) -> str:
        """Why a room does not open the file (larger than ``YDJANGO_MAX_FILE_SIZE``), or
        ``""``. :raises PathError: (fast path) outside the root."""
        limit = int(get_setting("YDJANGO_MAX_FILE_SIZE") or 0)
        if limit <= 0:
            return ""
        try:
            version = await self.stat(api_path, doc_type)
        except (OSError, ValueError):  # PathError is a ValueError: the caller's read says why
            return ""
        if version is None or version.size is None or version.size <= limit:
            return ""
        return (f"{api_path} is {version.size / 2**20:.1f} MiB, larger than the "
                f"{limit / 2**20:.1f} MiB a room opens (YDJANGO_MAX_FILE_SIZE)")

    async def read(self, api_path: str, doc_format: str, doc_type: str) -> FileState:
        """The file's content and version.

        :raises FileNotFoundError: no such file.
        :raises PathError: (fast path) outside the root, or replaced by a link.
        :raises OSError: it cannot be read; an error of the manager is raised as one.
        """
        if self.fast:
            return await run_io(disk.read_file, self.real_path(api_path))
        manager = self.manager
        if not await ensure_async(manager.file_exists(api_path)):
            raise FileNotFoundError(api_path)
        try:
            model = await _get(manager, api_path, True, content=True,
                               type=manager_type(doc_type),
                               format=manager_format(doc_format, doc_type))
        except Exception as exc:
            raise OSError(f"the contents manager cannot read {api_path}: "
                          f"{_manager_error(exc)}") from exc
        signature = _model_signature(model)
        return FileState(model_bytes(model), _version_hash(signature), signature,
                         _modified(model.get("last_modified")), model.get("hash") or "")

    async def write(self, api_path: str, doc_format: str, doc_type: str,
                    data: bytes) -> FileState:
        """Replace the file's content by ``data`` (never make the file): the new version.

        :raises FileNotFoundError: the file does not exist (any more).
        :raises PermissionError: the manager reports it not writable.
        :raises OSError: it cannot be written (the manager's error as one).
        """
        if self.fast:
            path = self.real_path(api_path)
            if path.exists() and not os.access(path, os.W_OK):
                raise PermissionError(f"{api_path} is not writable")
            return await run_io(disk.write_file_atomic, path, data, True)
        version = await self.stat(api_path, doc_type)
        if version is None:
            raise FileNotFoundError(api_path)
        if not version.writable:
            raise PermissionError(f"{api_path} is not writable")
        model = bytes_model(data, doc_format, doc_type)
        try:
            await ensure_async(self.manager.save(model, api_path))
        except Exception as exc:
            raise OSError(f"the contents manager cannot save {api_path}: "
                          f"{_manager_error(exc)}") from exc
        version = await self.stat(api_path, doc_type, with_hash=True)
        if version is None:
            raise FileNotFoundError(api_path)
        return FileState(data, _version_hash(version.signature), version.signature,
                         _modified(version.signature[0]), version.api_hash)

    async def create(self, api_path: str, doc_format: str, doc_type: str,
                     data: bytes) -> None:
        """Make the file ``api_path`` with ``data`` (its folders too), never over a file.

        :raises FileExistsError: there is a file there.
        :raises PathError: (fast path) outside the root.
        :raises OSError: it cannot be written (the manager's error as one).
        """
        if self.fast:
            await run_io(disk.create_file, self.real_path(api_path), data)
            return
        manager = self.manager
        if await ensure_async(manager.file_exists(api_path)):
            raise FileExistsError(api_path)
        model = bytes_model(data, doc_format, doc_type)
        await self._make_folder(posixpath.dirname(api_path))
        try:
            await ensure_async(manager.save(model, api_path))
        except Exception as exc:
            raise OSError(f"the contents manager cannot save {api_path}: "
                          f"{_manager_error(exc)}") from exc

    async def _make_folder(self, api_path: str) -> None:
        """Make the folder ``api_path`` and its parents where the manager has none. A
        manager may keep no folders of their own (an object store, where a folder is the
        prefix of its files): one it refuses to make is left to the file's save."""
        manager = self.manager
        if not api_path or await ensure_async(manager.dir_exists(api_path)):
            return
        await self._make_folder(posixpath.dirname(api_path))
        with contextlib.suppress(Exception):
            await ensure_async(manager.save({"type": "directory"}, api_path))

    async def write_copy(self, api_path: str, doc_format: str, doc_type: str, kind: str,
                         data: bytes) -> str:
        """Keep ``data`` as a new file beside the file (``name.{kind}-{time}.ext``): its API
        path. :raises OSError: it cannot be written."""
        if self.fast:
            copy = await run_io(disk.write_copy, self.real_path(api_path), kind, data)
            return posixpath.join(posixpath.dirname(api_path), copy.name)
        folder, name = posixpath.split(api_path)
        stem, ext = posixpath.splitext(name)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        manager = self.manager
        for n in range(1000):
            copy = posixpath.join(folder, f"{stem}.{kind}-{stamp}{f'-{n}' if n else ''}{ext}")
            if await ensure_async(manager.file_exists(copy)):
                continue
            try:
                await ensure_async(manager.save(bytes_model(data, doc_format, doc_type), copy))
            except Exception as exc:
                raise OSError(f"the contents manager cannot save {copy}: "
                              f"{_manager_error(exc)}") from exc
            return copy
        raise FileExistsError(f"no free name for a copy of {api_path}")


async def _get(manager: Any, api_path: str, with_hash: bool, **options: Any) -> dict[str, Any]:
    """``manager.get``, asking for the file's hash where the manager knows the option
    (``require_hash``: jupyter_server 2.11 and later, and managers that follow it)."""
    if with_hash:
        try:
            return await ensure_async(manager.get(api_path, require_hash=True, **options))
        except TypeError:  # a manager written before the option
            pass
    return await ensure_async(manager.get(api_path, **options))


def _manager_error(exc: BaseException) -> str:
    """A manager's error in a sentence (a tornado ``HTTPError`` says it in ``log_message``)."""
    return getattr(exc, "log_message", None) or str(exc) or type(exc).__name__


def files_of(root: Path | None = None) -> Files:
    """The file access of the rooms of ``root`` (default: the notebook root)."""
    return Files(root.resolve() if root is not None else notebook_root())
