"""Every document type jupyter_ydoc knows, as a room format.

jupyter_ydoc keeps a registry of document classes by type (its ``jupyter_ydoc`` entry points,
``jupyter_ydoc.ydocs``): ``notebook``, ``file``, ``unicode``, ``blob``, and whatever other
packages register, such as jupyterlab-chat's ``chat``. :func:`find_format` answers the room
format of a ``(format, type)`` pair: this package's own mapping for ``json:notebook`` and
``text:file`` (:data:`~jupyter_ydjango.formats.builtin.FORMATS`, faster), else a :class:`YDocFormat`
around the registered class, for the file formats of :data:`FILE_FORMATS`:

* ``text``: the file is UTF-8 text, handed to the class as a ``str``;
* ``base64``: the file's bytes, handed to the class as ``bytes`` (what ``YBlob`` holds).

The file is loaded through the class's ``set()`` and saved through its ``get()``; everything
else (the update log, snapshots, saves, changes on disk) is the room's, as for notebooks.

A live room's document is wrapped by one instance of the class for as long as the room is
loaded (:meth:`YDocFormat.bind`): server-side behaviour of the class runs on the live document
(jupyterlab-chat's ``YChat`` stamps new messages with the server's time and gives a new chat
its id), and server extensions get that instance
(:mod:`jupyter_ydjango.jupyter.collaboration`).

jupyter_ydoc is optional: without it, only notebooks and text files are served.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

import pycrdt

from jupyter_ydjango.formats.builtin import FORMATS, DocumentFormat, FormatError

logger = logging.getLogger(__name__)

__all__ = ["FILE_FORMATS", "YDocFormat", "document_classes", "find_format", "without_undo"]

#: The file formats a registered document class can be served in.
FILE_FORMATS = ("text", "base64")


class _NoUndo:
    """The only origin the undo manager of a server-side document tracks: none is used."""


def without_undo(document: Any) -> Any:
    """``document`` (a jupyter_ydoc document) with an undo manager that records nothing.

    jupyter_ydoc's documents track every transaction of their document for undo; on a live
    room that history would grow with every edit of every client for as long as the room is
    loaded, and nobody undoes from the server.
    """
    document.undo_manager.include_origin(_NoUndo)
    return document


@functools.cache
def document_classes() -> Mapping[str, type]:
    """jupyter_ydoc's document classes by type (empty if jupyter_ydoc is not installed or its
    registry cannot be loaded)."""
    try:
        import jupyter_ydoc
    except ImportError:
        return {}
    except Exception:
        # jupyter_ydoc loads every registered class on import: one broken package breaks it
        logger.exception("jupyter_ydoc's document classes cannot be loaded")
        return {}
    return dict(jupyter_ydoc.ydocs)


def find_format(file_format: str, file_type: str) -> DocumentFormat | None:
    """The room format of documents ``{file_format}:{file_type}``, or ``None`` if no class
    serves them."""
    own = FORMATS.get((file_format, file_type))
    if own is not None:
        return own
    if file_format not in FILE_FORMATS or file_type not in document_classes():
        return None
    return _generic_format(file_format, file_type)


@functools.cache
def _generic_format(file_format: str, file_type: str) -> YDocFormat:
    return YDocFormat(document_classes()[file_type], file_format)


class YDocFormat(DocumentFormat):
    """A document type through its jupyter_ydoc class (``YBaseDoc`` subclass).

    ``document_class(doc)`` wraps a :class:`pycrdt.Doc`; its ``set()`` fills the document
    from the file's content and ``get()`` reads the content back. The class's shared types
    other than ``state`` are the content (their changes are saved).
    """

    def __init__(self, document_class: type, file_format: str) -> None:
        if file_format not in FILE_FORMATS:
            raise ValueError(f"unsupported file format {file_format!r}")
        self.document_class = document_class
        self.file_format = file_format
        # the live rooms' documents: id(doc) -> the instance wrapping it (which keeps the doc,
        # and so its id, alive until unbind)
        self._bound: dict[int, Any] = {}
        self._checked = False  # whether set() was checked for determinism
        self._roots = self._root_types()

    def __repr__(self) -> str:
        return f"YDocFormat({self.document_class.__qualname__}, {self.file_format!r})"

    def _root_types(self) -> dict[str, type]:
        """The shared types the class puts at the root of a document, by name."""
        probe = pycrdt.Doc()
        self._wrap(probe).unobserve()
        roots = {name: type(root) for name, root in probe.items() if name != "state"}
        if not roots:
            raise ValueError(f"{self.document_class.__qualname__} makes no shared type")
        return roots

    def _wrap(self, doc: pycrdt.Doc) -> Any:
        try:
            return without_undo(self.document_class(doc))
        except Exception as exc:
            raise FormatError(f"{self.document_class.__qualname__}(): {exc!r}") from exc

    # --- the live document -----------------------------------------------------------------

    def bind(self, doc: pycrdt.Doc) -> None:
        """Wrap a live room's document in the class, once; the wrapper's own observers run
        from now on. Its construction may write to ``state`` (``YChat`` sets ``dirty``):
        ``dirty`` is put back as it was."""
        if id(doc) in self._bound:
            return
        dirty = doc.get("state", type=pycrdt.Map).get("dirty")
        self._bound[id(doc)] = self._wrap(doc)
        if dirty is not None:
            self.set_state(doc, dirty=dirty)

    def unbind(self, doc: pycrdt.Doc) -> None:
        """Let go of a room's document (the room is unloaded): its wrapper stops observing."""
        document = self._bound.pop(id(doc), None)
        if document is not None:
            document.unobserve()

    def document(self, doc: pycrdt.Doc) -> Any:
        """The instance of the class bound to a live room's document.

        :raises KeyError: ``doc`` is not bound.
        """
        return self._bound[id(doc)]

    def _use(self, doc: pycrdt.Doc) -> tuple[Any, bool]:
        """The wrapper of ``doc``: the bound one, else a new one (then ``True``: unobserve it
        after use)."""
        bound = self._bound.get(id(doc))
        return (bound, False) if bound is not None else (self._wrap(doc), True)

    # --- DocumentFormat ----------------------------------------------------------------------

    def parse(self, data: bytes) -> Any:
        if self.file_format == "base64":
            return data
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"The file is not UTF-8 text: {exc}") from None

    def render(self, content: Any, shape: Any = None) -> bytes:
        if self.file_format == "base64":
            if not isinstance(content, (bytes, bytearray)):
                raise FormatError(f"{self.document_class.__qualname__}.get() did not return "
                                  f"bytes but {type(content).__name__}")
            return bytes(content)
        if not isinstance(content, str):
            raise FormatError(f"{self.document_class.__qualname__}.get() did not return "
                              f"text but {type(content).__name__}")
        return content.encode("utf-8", "surrogatepass")

    def load_into(self, doc: pycrdt.Doc, content: Any, path: str, content_hash: str) -> None:
        """Fill an empty document through the class's ``set()``.

        The first time, the content is also loaded into a second document with the same
        client id: a class whose ``set()`` does not make the same update twice (random ids,
        timestamps) is reported, because a file imported again (into a history that was
        lost) would then duplicate its content in clients that kept the old one.
        """
        if doc.get_state() != _EMPTY_STATE:
            raise FormatError("The document is not empty; load into an empty one")
        self._set(doc, content)
        if not self._checked:
            self._checked = True
            probe = pycrdt.Doc(client_id=doc.client_id)
            self._set(probe, content)
            if probe.get_update() != doc.get_update():
                logger.warning("%s.set() is not deterministic: a file imported again would "
                               "not make the same document", self.document_class.__qualname__)
        self.set_state(doc, dirty=False, hash=content_hash, path=path)

    def _set(self, doc: pycrdt.Doc, content: Any) -> None:
        document = self._wrap(doc)
        document.unobserve()  # nothing the class schedules may write after the import
        try:
            with doc.transaction():
                document.set(content)
        except Exception as exc:
            raise FormatError(f"{self.document_class.__qualname__}.set(): {exc!r}") from exc

    def read(self, doc: pycrdt.Doc, shape: Any = None) -> Any:
        document, temporary = self._use(doc)
        try:
            return document.get()
        except Exception as exc:
            raise FormatError(f"{self.document_class.__qualname__}.get(): {exc!r}") from exc
        finally:
            if temporary:
                document.unobserve()

    def replace(self, doc: pycrdt.Doc, content: Any) -> bool:
        document, temporary = self._use(doc)
        try:
            if document.get() == content:
                return False
            with doc.transaction():
                document.set(content)
            return True
        except Exception as exc:
            raise FormatError(f"{self.document_class.__qualname__}.set(): {exc!r}") from exc
        finally:
            if temporary:
                document.unobserve()

    def content_roots(self, doc: pycrdt.Doc) -> list[Any]:
        return [doc.get(name, type=root_type) for name, root_type in self._roots.items()]


_EMPTY_STATE = pycrdt.Doc().get_state()
