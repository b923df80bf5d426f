"""Document formats: how a file's bytes become a YDoc and back, per room type.

A room id is ``{format}:{type}:{fileId}``; :data:`FORMATS` maps ``(format, type)`` to the
:class:`DocumentFormat` that knows the document's schema:

* ``json:notebook``: an ``.ipynb`` in JupyterLab's notebook schema (:mod:`.notebook`);
* ``text:file``: a UTF-8 text file as a ``source`` YText (jupyter_ydoc's ``YUnicode``/``YFile``).

``parse`` and ``render`` touch no pycrdt object and may run in a worker thread; the other
methods run on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pycrdt

from . import notebook

__all__ = ["FORMATS", "DocumentFormat", "FormatError", "NotebookFormat", "TextFormat"]


class FormatError(ValueError):
    """A file that cannot be loaded, or a document that cannot be written as a valid file."""


class DocumentFormat:
    """The conversions between a file and a document of one room type."""

    def parse(self, data: bytes) -> Any:
        """The file's content from its bytes (thread-safe). :raises FormatError:"""
        raise NotImplementedError

    def render(self, content: Any) -> bytes:
        """The file's bytes for ``content``, validated (thread-safe). :raises FormatError:"""
        raise NotImplementedError

    def load_into(self, doc: pycrdt.Doc, content: Any, path: str, content_hash: str) -> None:
        """Fill an empty document with ``content``, deterministically, in one transaction;
        ``state.path`` and ``state.hash`` (the file's SHA-256, as Jupyter's contents manager
        computes it: the frontend compares it with the file's) are set too."""
        raise NotImplementedError

    def load_steps(self, doc: pycrdt.Doc, content: Any, path: str,
                   content_hash: str) -> Iterator[None]:
        """:meth:`load_into` in several transactions, pausing after each (the same operations
        in the same order, so the same Yjs items). Default: one step."""
        self.load_into(doc, content, path, content_hash)
        yield

    def read(self, doc: pycrdt.Doc) -> Any:
        """The content a document holds. :raises FormatError:"""
        raise NotImplementedError

    def dump(self, doc: pycrdt.Doc) -> Any:
        """A copy of what a document holds that is quick to make (on the document's thread)
        and can travel to another thread or process, for :meth:`render_dump`."""
        raise NotImplementedError

    def render_dump(self, dump: Any) -> bytes:
        """The file's bytes for a :meth:`dump` (thread- and process-safe).
        :raises FormatError:"""
        return self.render(dump)

    def replace(self, doc: pycrdt.Doc, content: Any) -> bool:
        """Edit a document to hold ``content``, changing only what differs; whether it changed."""
        raise NotImplementedError

    def content_roots(self, doc: pycrdt.Doc) -> list[Any]:
        """The shared types whose changes are changes of the file (not of ``state``)."""
        raise NotImplementedError

    def set_state(self, doc: pycrdt.Doc, **values: Any) -> None:
        """Set entries of the document's ``state`` map that differ from ``values``."""
        ystate = doc.get(notebook.STATE, type=pycrdt.Map)
        changed = {key: value for key, value in values.items() if ystate.get(key) != value}
        if changed:
            with doc.transaction():
                for key, value in changed.items():
                    ystate[key] = value


class NotebookFormat(DocumentFormat):
    """``json:notebook``: ``.ipynb`` files through nbformat."""

    def parse(self, data: bytes) -> Any:
        try:
            return notebook.read_notebook(data)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def render(self, content: Any) -> bytes:
        """The file's bytes; ``content`` (as :meth:`read` returns it) is used up: multi-line
        strings are split in place rather than in a copy."""
        try:
            return notebook.write_notebook(content, copy=False).encode("utf-8")
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def load_into(self, doc: pycrdt.Doc, content: Any, path: str, content_hash: str) -> None:
        try:
            notebook.load_into(doc, content, path=path, content_hash=content_hash)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def load_steps(self, doc: pycrdt.Doc, content: Any, path: str,
                   content_hash: str) -> Iterator[None]:
        try:
            yield from notebook.load_steps(doc, content, path=path, content_hash=content_hash)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def read(self, doc: pycrdt.Doc) -> Any:
        try:
            return notebook.notebook_from_doc(doc)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def dump(self, doc: pycrdt.Doc) -> Any:
        return notebook.doc_json(doc)

    def render_dump(self, dump: Any) -> bytes:
        try:
            return self.render(notebook.notebook_from_json(*dump))
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def replace(self, doc: pycrdt.Doc, content: Any) -> bool:
        try:
            return notebook.replace_content(doc, content)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc)) from None

    def content_roots(self, doc: pycrdt.Doc) -> list[Any]:
        return [doc.get(notebook.CELLS, type=pycrdt.Array),
                doc.get(notebook.META, type=pycrdt.Map)]


class TextFormat(DocumentFormat):
    """``text:file``: UTF-8 text files, as one ``source`` YText."""

    SOURCE = "source"

    def parse(self, data: bytes) -> Any:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"The file is not UTF-8 text: {exc}") from None

    def render(self, content: Any) -> bytes:
        return str(content).encode("utf-8", "surrogatepass")

    def load_into(self, doc: pycrdt.Doc, content: Any, path: str, content_hash: str) -> None:
        source = doc.get(self.SOURCE, type=pycrdt.Text)
        if len(source):
            raise FormatError("The document already has text; load into an empty one")
        with doc.transaction():
            source += content
            state = doc.get(notebook.STATE, type=pycrdt.Map)
            state["dirty"] = False
            state["hash"] = content_hash
            state["path"] = path

    def read(self, doc: pycrdt.Doc) -> Any:
        return str(doc.get(self.SOURCE, type=pycrdt.Text))

    def dump(self, doc: pycrdt.Doc) -> Any:
        return self.read(doc)

    def replace(self, doc: pycrdt.Doc, content: Any) -> bool:
        source = doc.get(self.SOURCE, type=pycrdt.Text)
        old = str(source)
        if old == content:
            return False
        # keep the common head and tail (and the cursors in them); replace the middle
        start = 0
        limit = min(len(old), len(content))
        while start < limit and old[start] == content[start]:
            start += 1
        end = 0
        while end < limit - start and old[-1 - end] == content[-1 - end]:
            end += 1
        with doc.transaction():
            at = _byte_index(old, start)
            if len(old) - start - end:
                del source[at:at + _byte_len(old[start:len(old) - end])]
            if len(content) - start - end:
                source.insert(at, content[start:len(content) - end])
        return True

    def content_roots(self, doc: pycrdt.Doc) -> list[Any]:
        return [doc.get(self.SOURCE, type=pycrdt.Text)]


# pycrdt indexes text by UTF-8 bytes.
def _byte_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _byte_index(text: str, index: int) -> int:
    return _byte_len(text[:index])


#: The document formats by ``(format, type)`` of the room id.
FORMATS: dict[tuple[str, str], DocumentFormat] = {
    ("json", "notebook"): NotebookFormat(),
    ("text", "file"): TextFormat(),
}
