"""Path safety: an API path can only ever name a file inside the notebook root.

API paths are what Jupyter's contents API uses: relative, ``/``-separated. Pure functions;
the only file-system access is resolving symlinks.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

__all__ = [
    "PathError", "hidden_unless_allowed", "is_hidden", "normalize_api_path", "resolve_in_root",
]


class PathError(ValueError):
    """A path that is malformed or reaches outside the notebook root (an HTTP 403)."""


def normalize_api_path(api_path: str) -> str:
    """Check an API path and return it in canonical form (no empty or ``.`` segments).

    :raises PathError: empty, absolute (``/x``, ``C:``, ``\\\\x``), with a ``..`` segment, a
        backslash, a NUL or other control character.
    """
    if not api_path or not api_path.strip("/"):
        raise PathError("an empty path names no file")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in api_path):
        raise PathError("control characters are not allowed in a path")
    if "\\" in api_path:
        raise PathError("backslashes are not allowed in a path")
    if api_path.startswith("/") or (len(api_path) > 1 and api_path[1] == ":"):
        raise PathError(f"absolute paths are not allowed: {api_path!r}")
    parts = [part for part in api_path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise PathError(f"'..' is not allowed in a path: {api_path!r}")
    return str(PurePosixPath(*parts))


def is_hidden(api_path: str) -> bool:
    """Whether an API path names a hidden file, as Jupyter's file contents manager sees one
    on Linux: the file, or a folder on its way, has a name that starts with ``.``."""
    return any(part.startswith(".") for part in api_path.split("/") if part not in ("", "."))


def hidden_unless_allowed(api_path: str) -> bool:
    """Whether an API path names a hidden file that is not served (``YDJANGO_ALLOW_HIDDEN``
    unset): it is answered as a file that does not exist."""
    from .conf import get_setting

    return is_hidden(api_path) and not get_setting("YDJANGO_ALLOW_HIDDEN")


def resolve_in_root(root: str | os.PathLike[str], api_path: str) -> Path:
    """The real file-system path of ``api_path`` under ``root``, symlinks resolved.

    The file need not exist.

    :raises PathError: the path is malformed (see :func:`normalize_api_path`) or resolves,
        through symlinks, to somewhere outside ``root``.
    """
    real_root = Path(root).resolve()
    candidate = (real_root / normalize_api_path(api_path)).resolve()
    if candidate == real_root or not candidate.is_relative_to(real_root):
        raise PathError(f"{api_path!r} is outside the notebook root")
    return candidate
