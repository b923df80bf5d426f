"""Path safety: an API path can only ever name a file inside the notebook root.

API paths are what Jupyter's contents API uses: relative, ``/``-separated. Pure functions;
the only file-system access is resolving symlinks (and a contents manager's own look at
whether a file is hidden).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "PathError", "hidden_by", "normalize_api_path", "resolve_in_root",
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


async def hidden_by(manager: Any, api_path: str) -> bool:
    """Whether a Jupyter contents manager hides ``api_path``: a name on the way matches its
    ``hide_globs`` (``__pycache__``, ``*.pyc``...), or, unless it allows hidden files, its
    own rule says hidden (a dot name on the way, the system's hidden flag). Such a file is
    answered as one that does not exist."""
    should_list = getattr(manager, "should_list", None)
    if should_list is not None and not all(
            should_list(part) for part in api_path.split("/") if part not in ("", ".")):
        return True
    if getattr(manager, "allow_hidden", False):
        return False
    try:
        hidden = manager.is_hidden(api_path)
        if inspect.isawaitable(hidden):
            hidden = await hidden
        return bool(hidden)
    except Exception:  # a path the manager cannot look at (no such file): not hidden by it
        return False


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
