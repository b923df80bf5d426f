"""A jupyter_ydoc document type of the tests' own: a task list (``tasks``).

The directory holding this module also holds its distribution's metadata
(``ydjango_test_ydoc-1.0.dist-info``), which registers the class with jupyter_ydoc through
the ``jupyter_ydoc`` entry point group: a process with this directory on its ``PYTHONPATH``
sees a document type ``tasks`` that neither jupyter_ydoc nor jupyter-ydjango knows.

The file is JSON text ``{"title": str, "tasks": [{"text": str, "done": bool}, ...]}``; the
document holds the title in a ``meta`` map and each task as a map in the ``tasks`` array.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from jupyter_ydoc.ybasedoc import YBaseDoc
from pycrdt import Array, Awareness, Doc, Map


class YTasks(YBaseDoc):
    """A task list."""

    def __init__(self, ydoc: Doc | None = None, awareness: Awareness | None = None) -> None:
        super().__init__(ydoc, awareness)
        self._ymeta = self._ydoc.get("meta", type=Map)
        self._ytasks = self._ydoc.get("tasks", type=Array)

    @property
    def version(self) -> str:
        return "1.0.0"

    @property
    def ytasks(self) -> Array:
        """The tasks, each a map with ``text`` and ``done``."""
        return self._ytasks

    def add(self, text: str, done: bool = False) -> None:
        """Append a task."""
        self._ytasks.append(Map({"text": text, "done": done}))

    def get(self) -> str:
        content = {
            "title": self._ymeta.get("title", ""),
            "tasks": [{"text": task["text"], "done": bool(task["done"])}
                      for task in self._ytasks],
        }
        return json.dumps(content, indent=2) + "\n"

    def set(self, value: str) -> None:
        content = json.loads(value) if value.strip() else {}
        with self._ydoc.transaction():
            self._ytasks.clear()
            self._ymeta["title"] = content.get("title", "")
            for task in content.get("tasks", []):
                self.add(task["text"], task.get("done", False))

    def observe(self, callback: Callable[[str, Any], None]) -> None:
        self.unobserve()
        self._subscriptions[self._ystate] = self._ystate.observe(partial(callback, "state"))
        self._subscriptions[self._ymeta] = self._ymeta.observe(partial(callback, "meta"))
        self._subscriptions[self._ytasks] = self._ytasks.observe_deep(partial(callback, "tasks"))
