"""Files on disk: read with their signature, written atomically, copies kept beside them."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from jupyter_ydjango.store.paths import PathError


@dataclass(frozen=True)
class FileState:
    """A file's content and what identifies its version."""

    data: bytes
    #: Names the version: the SHA-256 of the bytes on disk (or, through a contents manager,
    #: of its signature: see :mod:`jupyter_ydjango.store.contents`).
    hash: str
    #: Changes whenever the file is rewritten: ``(st_mtime_ns, st_size, st_ino)`` on disk;
    #: a contents manager's ``(last_modified, size)``.
    signature: tuple[Any, ...]
    #: When the file was last written (epoch seconds).
    modified: float = 0.0
    #: The hash Jupyter's contents API gives for this version, where it is not :attr:`hash`
    #: (a contents manager's; ``""``: it gives none).
    api_hash: str | None = None

    @property
    def shown_hash(self) -> str:
        """The hash the frontend knows this version by (it compares it with the document's
        ``state.hash`` before it saves)."""
        return self.hash if self.api_hash is None else self.api_hash


def sha256(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


#: ``open`` flag that refuses a symbolic link as the last component (none on Windows).
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _became_a_link(path: Path) -> PathError:
    return PathError(f"{path} was replaced by a symbolic link")


def stat_file(path: Path) -> tuple[int, int, int] | None:
    """The file's signature (see :class:`FileState`), or ``None`` if it does not exist.

    ``path`` is a real path (see :func:`~jupyter_ydjango.store.paths.resolve_in_root`), so its last
    component is no link; one found there now was put there since it was resolved.

    :raises PathError: the file was replaced by a symbolic link.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _became_a_link(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def stat_writable(path: Path) -> tuple[tuple[int, int, int], bool] | None:
    """The file's signature and whether this process may write it, or ``None`` if it does
    not exist. A file deleted between the two checks is ``None``, not "not writable".

    :raises PathError: the file was replaced by a symbolic link.
    """
    signature = stat_file(path)
    if signature is None:
        return None
    if os.access(path, os.W_OK):
        return signature, True
    if stat_file(path) != signature:  # deleted (or replaced) meanwhile: asked again
        return stat_writable(path)
    return signature, False


def read_file(path: Path) -> FileState:
    """Read a file whole, never through a symbolic link (``path`` is a real path: see
    :func:`stat_file`).

    :raises OSError: it cannot be read (``FileNotFoundError``...).
    :raises PathError: the file was replaced by a symbolic link.
    """
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _became_a_link(path) from None
        raise
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    return FileState(data, sha256(data), (st.st_mtime_ns, st.st_size, st.st_ino),
                     st.st_mtime_ns / 1e9)


def write_file_atomic(path: Path, data: bytes, replace_only: bool = False) -> FileState:
    """Replace ``path`` by ``data`` atomically: a temporary file in the same directory, fsynced,
    given the old file's permissions (and owner, where allowed), then renamed over it.

    Readers see the old file or the new one, never a part; a crash leaves the old file.
    With ``replace_only``, a file that does not exist (or no longer exists when the new one
    is ready) is not made: :class:`FileNotFoundError`.
    """
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        if replace_only:
            raise
        old = None
    if old is not None and stat.S_ISLNK(old.st_mode):  # never write through, nor over, a link
        raise _became_a_link(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if old is not None:
            os.chmod(tmp, stat.S_IMODE(old.st_mode))
            with contextlib.suppress(OSError):  # only root may give files away
                os.chown(tmp, old.st_uid, old.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        if replace_only and not path.exists():  # deleted while this was written
            raise FileNotFoundError(errno.ENOENT, "deleted while being saved", str(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    st = path.stat()
    return FileState(data, sha256(data), (st.st_mtime_ns, st.st_size, st.st_ino),
                     st.st_mtime_ns / 1e9)


def create_file(path: Path, data: bytes) -> None:
    """Make ``path`` (and its folders) with ``data``, never over a file, even one made
    meanwhile. :raises FileExistsError: there is one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as f:
        f.write(data)


def write_copy(path: Path, kind: str, data: bytes) -> Path:
    """Keep ``data`` as a recoverable copy beside ``path``: ``name.{kind}-{time}.ext``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        suffix = f"-{n}" if n else ""
        copy = path.with_name(f"{path.stem}.{kind}-{stamp}{suffix}{path.suffix}")
        try:
            with open(copy, "xb") as f:
                f.write(data)
            return copy
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a copy of {path}")

