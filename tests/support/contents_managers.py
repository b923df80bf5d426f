"""Contents managers and save hooks of the tests' Jupyter servers and services (loaded by the
server process, from ``tests/`` on its ``PYTHONPATH``).

* :func:`strip_outputs`: a ``pre_save_hook`` that strips a notebook's outputs, as people
  configure for version control;
* :class:`MemoryContentsManager`: an async manager whose files live in memory, never on disk
  (as S3 or database-backed managers keep theirs elsewhere), seeded from the JSON object in
  ``MEMORY_CONTENTS`` (``{path: text}``);
* :class:`ReadOnlyContentsManager`: Jupyter's file manager, but files whose name starts with
  ``locked`` are reported not writable, and refused, as a 0444 file is for a user other than
  root.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from typing import Any

import nbformat
from jupyter_server.services.contents.checkpoints import AsyncCheckpoints
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.contents.manager import AsyncContentsManager
from tornado import web


def strip_outputs(model: dict[str, Any], **_: Any) -> None:
    """A ``pre_save_hook``: a notebook is saved without outputs and execution counts."""
    if model.get("type") != "notebook":
        return
    for cell in model["content"].get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None


class NoCheckpoints(AsyncCheckpoints):
    """Checkpoints of a manager that keeps none."""

    async def create_checkpoint(self, contents_mgr: Any, path: str) -> dict[str, Any]:
        return {"id": "none", "last_modified": datetime.now(timezone.utc)}

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        return []

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        return None


class MemoryContentsManager(AsyncContentsManager):
    """Files in a dict of this process: ``{path: (text, last_modified)}``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checkpoints_class = NoCheckpoints
        seed = json.loads(os.environ.get("MEMORY_CONTENTS", "{}"))
        now = datetime.now(timezone.utc)
        self.files: dict[str, tuple[str, datetime]] = {p: (t, now) for p, t in seed.items()}

    @staticmethod
    def _clean(path: str) -> str:
        return path.strip("/")

    async def dir_exists(self, path: str) -> bool:
        path = self._clean(path)
        return path == "" or any(p.startswith(path + "/") for p in self.files)

    async def is_hidden(self, path: str) -> bool:
        return any(part.startswith(".") for part in self._clean(path).split("/"))

    async def file_exists(self, path: str = "") -> bool:
        return self._clean(path) in self.files

    async def get(self, path: str, content: bool = True, type: str | None = None,
                  format: str | None = None, require_hash: bool = False) -> dict[str, Any]:
        path = self._clean(path)
        if path == "" or await self.dir_exists(path):
            entries = [await self.get(p, content=False) for p in self.files
                       if p.rpartition("/")[0] == path] if content else None
            return {"name": path.rpartition("/")[2], "path": path, "type": "directory",
                    "format": "json" if content else None, "content": entries,
                    "mimetype": None, "writable": True, "size": None, "hash": None,
                    "hash_algorithm": None, "created": datetime.now(timezone.utc),
                    "last_modified": datetime.now(timezone.utc)}
        if path not in self.files:
            raise web.HTTPError(404, f"No such file: {path}")
        text, modified = self.files[path]
        kind = "notebook" if type == "notebook" or (type is None and path.endswith(".ipynb")) \
            else "file"
        model: dict[str, Any] = {
            "name": path.rpartition("/")[2], "path": path, "type": kind, "mimetype": None,
            "writable": True, "created": modified, "last_modified": modified,
            "size": len(text.encode()), "content": None, "format": None,
            "hash": hashlib.sha256(text.encode()).hexdigest() if require_hash else None,
            "hash_algorithm": "sha256" if require_hash else None,
        }
        if content:
            if kind == "notebook":
                model["content"] = nbformat.reads(text, as_version=4)
                model["format"] = "json"
            else:
                model["content"], model["format"] = text, "text"
        return model

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        path = self._clean(path)
        self.run_pre_save_hooks(model=model, path=path)
        if model["type"] == "notebook":
            text = nbformat.writes(nbformat.from_dict(model["content"]))
        elif model["type"] == "file":
            text = model["content"]
        else:
            raise web.HTTPError(400, f"cannot keep a {model['type']} in memory")
        self.files[path] = (text, datetime.now(timezone.utc))
        return await self.get(path, content=False)

    async def delete_file(self, path: str) -> None:
        self.files.pop(self._clean(path), None)

    async def rename_file(self, old_path: str, new_path: str) -> None:
        self.files[self._clean(new_path)] = self.files.pop(self._clean(old_path))


class ReadOnlyContentsManager(AsyncLargeFileManager):
    """Jupyter's file manager, where a file named ``locked*`` is not writable."""

    @staticmethod
    def _locked(path: str) -> bool:
        return path.strip("/").rpartition("/")[2].startswith("locked")

    async def get(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        model = await super().get(path, *args, **kwargs)
        if self._locked(path):
            model["writable"] = False
        return model

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        if self._locked(path):
            raise web.HTTPError(403, f"{path} is read-only")
        return await super().save(model, path)
