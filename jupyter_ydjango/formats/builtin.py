"""Document formats: how a file's bytes become a YDoc and back, per room type.

A room id is ``{format}:{type}:{fileId}``; :data:`FORMATS` maps ``(format, type)`` to the
:class:`DocumentFormat` that knows the document's schema:

* ``json:notebook``: an ``.ipynb`` in JupyterLab's notebook schema (:mod:`.notebook`);
* ``text:file``: a UTF-8 text file as a ``source`` YText (jupyter_ydoc's ``YUnicode``/``YFile``).

``parse``, ``shape``, ``render`` and ``render_dump`` touch no pycrdt object and may run in a
worker thread or process; the other methods run on the event loop.

A file may have a *shape* of its own that its document does not hold (a notebook's fields
beyond its schema, or lacking, see :mod:`.nbshape`): ``shape`` gives it from the parsed file,
and ``read`` and ``render`` take it to write the document back in the file's shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pycrdt

from jupyter_ydjango.formats import notebook
from jupyter_ydjango.formats.nbshape import FileShape, conform, shape_of

__all__ = ["FORMATS", "DocumentFormat", "FormatError", "NotebookFormat", "ParsedNotebook",
           "TextFormat"]


class FormatError(ValueError):
    """A file that cannot be loaded, or a document that cannot be written as a valid file.

    ``summary`` is a short sentence for the people who tried to open the file (at most 56
    bytes), or empty.
    """

    def __init__(self, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.summary = summary


class DocumentFormat:
    """The conversions between a file and a document of one room type."""

    def parse(self, data: bytes) -> Any:
        """The file's content from its bytes (thread-safe). :raises FormatError:"""
        raise NotImplementedError

    def shape(self, content: Any) -> Any:
        """The shape of the file ``content`` was parsed from (thread-safe); ``None`` when the
        document holds everything of it."""
        return None

    def render(self, content: Any, shape: Any = None) -> bytes:
        """The file's bytes for ``content``, validated, in the file's ``shape`` (thread-safe).
        :raises FormatError:"""
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

    def read(self, doc: pycrdt.Doc, shape: Any = None) -> Any:
        """The content a document holds (in its file's ``shape``, when given).
        :raises FormatError:"""
        raise NotImplementedError

    def dump(self, doc: pycrdt.Doc) -> Any:
        """A copy of what a document holds that is quick to make (on the document's thread)
        and can travel to another thread or process, for :meth:`render_dump`. Default: what
        :meth:`read` gives."""
        return self.read(doc)

    def render_dump(self, dump: Any, shape: Any = None) -> bytes:
        """The file's bytes for a :meth:`dump`, in the file's ``shape`` (thread- and
        process-safe). :raises FormatError:"""
        return self.render(dump, shape)

    def replace(self, doc: pycrdt.Doc, content: Any) -> bool:
        """Edit a document to hold ``content``, changing only what differs; whether it changed."""
        raise NotImplementedError

    def content_roots(self, doc: pycrdt.Doc) -> list[Any]:
        """The shared types whose changes are changes of the file (not of ``state``)."""
        raise NotImplementedError

    def bind(self, doc: pycrdt.Doc) -> None:
        """A room's document is loaded and live (called once, before any client joins)."""

    def unbind(self, doc: pycrdt.Doc) -> None:
        """A room's document is being unloaded (after its last save)."""

    def set_state(self, doc: pycrdt.Doc, **values: Any) -> None:
        """Set entries of the document's ``state`` map that differ from ``values``."""
        ystate = doc.get(notebook.STATE, type=pycrdt.Map)
        changed = {key: value for key, value in values.items() if ystate.get(key) != value}
        if changed:
            with doc.transaction():
                for key, value in changed.items():
                    ystate[key] = value


@dataclass(frozen=True)
class ParsedNotebook:
    """An ``.ipynb`` file's content: the notebook and the file's shape."""

    nb: Any
    shape: FileShape


def _notebook(content: Any) -> Any:
    return content.nb if isinstance(content, ParsedNotebook) else content


class NotebookFormat(DocumentFormat):
    """``json:notebook``: ``.ipynb`` files through nbformat, read as tolerantly as Jupyter
    reads them and written back in their own shape (see :mod:`.nbshape`)."""

    def parse(self, data: bytes) -> ParsedNotebook:
        try:
            nb = notebook.read_notebook(data)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc), exc.summary) from None
        return ParsedNotebook(nb, shape_of(nb, notebook.document_cell_ids(nb)))

    def shape(self, content: Any) -> FileShape:
        """The parsed file's shape; for a notebook read from a document, its own deviations
        (all tolerated: what it holds is written as it is)."""
        if isinstance(content, ParsedNotebook):
            return content.shape
        return shape_of(content, [c.get("id") if isinstance(c, dict) else "" for c in
                                  content.get("cells", ())])

    def render(self, content: Any, shape: Any = None) -> bytes:
        """The file's bytes; ``content`` (as :meth:`read` returns it) is used up: multi-line
        strings are split in place rather than in a copy."""
        tolerated = shape.tolerated if isinstance(shape, FileShape) else ()
        try:
            return notebook.write_notebook(_notebook(content), copy=False,
                                           tolerate=tolerated).encode("utf-8")
        except notebook.NotebookError as exc:
            raise FormatError(str(exc), exc.summary) from None

    def load_into(self, doc: pycrdt.Doc, content: Any, path: str, content_hash: str) -> None:
        try:
            notebook.load_into(doc, _notebook(content), path=path, content_hash=content_hash)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc), exc.summary) from None

    def load_steps(self, doc: pycrdt.Doc, content: Any, path: str,
                   content_hash: str) -> Iterator[None]:
        try:
            yield from notebook.load_steps(doc, _notebook(content), path=path,
                                           content_hash=content_hash)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc), exc.summary) from None

    def read(self, doc: pycrdt.Doc, shape: Any = None) -> Any:
        return self._read_json(notebook.doc_json(doc), shape)

    def dump(self, doc: pycrdt.Doc) -> Any:
        return notebook.doc_json(doc)

    def render_dump(self, dump: Any, shape: Any = None) -> bytes:
        return self.render(self._read_json(dump, shape), shape)

    def _read_json(self, dump: tuple[str, str], shape: Any) -> Any:
        """The notebook of a document's JSON (:func:`.notebook.doc_json`), in the file's
        shape."""
        try:
            nb = notebook.notebook_from_json(*dump)
        except notebook.NotebookError as exc:
            raise FormatError(str(exc), exc.summary) from None
        if isinstance(shape, FileShape) and not shape.plain:
            doc_cells = None
            if shape.absent or shape.extra_cell_keys:
                # the cells as the document holds them: their ids and the fields beyond the
                # schema, which the notebook read from it leaves out
                doc_cells = notebook.parse_doc_json(dump[1])
            conform(nb, shape, doc_cells)
        return nb

    def replace(self, doc: pycrdt.Doc, content: Any) -> bool:
        try:
            return notebook.replace_content(doc, _notebook(content))
        except notebook.NotebookError as exc:
            raise FormatError(str(exc), exc.summary) from None

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
            raise FormatError(f"The file is not UTF-8 text: {exc}",
                              "This file is not UTF-8 text.") from None

    def render(self, content: Any, shape: Any = None) -> bytes:
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

    def read(self, doc: pycrdt.Doc, shape: Any = None) -> Any:
        return str(doc.get(self.SOURCE, type=pycrdt.Text))

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
