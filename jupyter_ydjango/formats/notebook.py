"""Notebooks: nbformat <-> pycrdt document, in the schema JupyterLab's collaborative frontend uses.

The document layout is the one of ``@jupyter/ydoc`` 4 / ``jupyter_ydoc`` 4 (JupyterLab 4,
document version ``"2.0.0"``); other software depends on it, so it does not change:

``cells``: YArray of YMap, one per cell
    ``id`` (str), ``cell_type`` (str), ``source`` (YText), ``metadata`` (YMap of JSON values);
    code cells also ``execution_count`` (number or null), ``outputs`` (YArray of YMap: a
    stream output's ``text`` is a YText, every other output field a plain JSON value) and
    ``execution_state`` (``"idle"``/``"running"``: never written to the file); markdown and
    raw cells also ``attachments`` (plain JSON), omitted when empty.
``meta``: YMap
    ``nbformat`` and ``nbformat_minor`` (numbers), ``metadata`` (YMap of JSON values); a
    notebook from a newer nbformat than the one installed keeps any other top-level fields
    here too, so that saving it loses nothing.
``state``: YMap
    ``dirty``, ``path``, ``hash`` (kept by the server) and ``document_id`` (written by the
    frontend's provider, the room name, once it has synced).

Things worth knowing:

* Yjs numbers are JavaScript numbers: every number comes back from the doc as a float. On the
  way out, a float that is a safe integer becomes an ``int`` again, everywhere (as jupyter_ydoc
  does): ``execution_count``, ``nbformat`` and ``nbformat_minor`` need it, and so does a
  byte-identical save of metadata such as ``"version": 3``. A float like ``1.0`` in metadata
  therefore comes back as ``1``: the doc cannot tell them apart, in any implementation.
  Integers beyond 2**53 are stored as floats (pycrdt refuses integers wider than 64 bits, and
  JavaScript holds only 53 of them exactly); those wider than 64 bits are read as floats from
  the file already (by orjson).
* Multi-line strings (nbformat's lists of lines) are single strings in the doc; nbformat splits
  them again when the notebook is written (:func:`write_notebook`).
* Every cell in the doc has an ``id`` (the frontend needs one) even in nbformat 4.0-4.4
  notebooks, which have no cell ids: those ids are doc-only and are stripped again on the way
  out, as the frontend and jupyter_ydoc do. Ids this module makes up are derived from the
  cell's position and content, never random, and maps are filled in sorted key order, so
  that importing the same file twice with the same client id creates the same Yjs items under
  the same ids (a room rebuilt from its file must not diverge from, or duplicate cells for,
  clients that still hold the old items).
* Array *move* is never used (yjs 13 cannot decode it).

A pycrdt document must be touched on the thread that made it; the nbformat functions here
(:func:`read_notebook`, :func:`write_notebook`, :func:`validate_notebook`) touch none and may
run in a worker thread.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Collection, Iterable, Iterator, Mapping
from copy import deepcopy
from typing import Any

import nbformat
import orjson
import pycrdt
from nbformat import NotebookNode, from_dict
from nbformat.reader import get_version
from nbformat.v4.nbjson import BytesEncoder
from nbformat.v4.rwbase import _split_mimebundle, rejoin_lines, strip_transient
from nbformat.validator import iter_validate

from jupyter_ydjango.formats.nbshape import CELL_KEYS, has_cell_ids, is_valid, schema_deviations

__all__ = [
    "NotebookError",
    "doc_json",
    "document_cell_ids",
    "load_into",
    "load_steps",
    "notebook_from_doc",
    "notebook_from_json",
    "read_notebook",
    "replace_content",
    "validate_notebook",
    "write_notebook",
]

#: Names of the root types of a notebook document.
CELLS = "cells"
META = "meta"
STATE = "state"

#: The newest nbformat 4 minor version nbformat knows; newer ("future") notebooks may carry
#: keys and cell types it does not know, which are then kept as they are.
_KNOWN_MINOR: int = nbformat.v4.nbformat_minor

#: The top-level fields of an nbformat 4 notebook.
_TOP_LEVEL_KEYS = frozenset({"cells", "metadata", "nbformat", "nbformat_minor"})

#: JavaScript's largest safe integer; larger ints are stored as floats (pycrdt panics on ints
#: wider than 64 bits).
_MAX_SAFE_INT = 2**53 - 1


class NotebookError(ValueError):
    """A notebook is unreadable or invalid, or a document cannot hold or give one.

    ``summary`` is a short sentence for the people who tried to open the file (at most 56
    bytes of UTF-8: it travels in a websocket close frame); the message has the details.
    """

    def __init__(self, message: str, summary: str = "") -> None:
        super().__init__(message)
        self.summary = summary or "This file cannot be opened as a notebook."


# --- nbformat side (no pycrdt objects) ----------------------------------------------------------


def read_notebook(source: str | bytes, *, strict: bool = False) -> NotebookNode:
    """Parse an ``.ipynb`` file's content the way Jupyter reads it.

    As Jupyter's file manager does (``nbformat.reads(text, as_version=4)``), nbformat 1-3
    notebooks are converted to nbformat 4.5 and nbformat 4.x notebooks keep their minor version
    (4.0-4.4 have no cell ids; they are added in the doc only, see :func:`load_into`). Where
    nbformat would make up random cell ids (4.5+ cells without one, duplicated ids, cells
    converted from nbformat 3) this function derives them from the cells instead, so that
    reading the same file twice gives the same notebook.

    Like Jupyter, it refuses only what nbformat cannot read: deviations from the nbformat
    schema are not errors unless ``strict`` (find them with
    :func:`~jupyter_ydjango.formats.nbshape.schema_deviations`; Jupyter logs them).

    :param source: the file's content; bytes are decoded as UTF-8.
    :returns: the notebook, with multi-line strings joined.
    :raises NotebookError: the content is not UTF-8, not JSON, not a notebook, of a major
        nbformat version nbformat does not know, or (with ``strict``) not a valid notebook.
    """
    raw = _parse_json(source)
    if not isinstance(raw, dict):
        raise NotebookError(f"Notebook JSON must be an object, not {type(raw).__name__}",
                            "Not a notebook: no notebook in this JSON.")
    major, _ = get_version(raw)  # (1, 0) without "nbformat", as for nbformat itself
    if type(major) is not int or major not in nbformat.versions:
        raise NotebookError(f"Unsupported notebook format version: nbformat {major!r}",
                            f"Unsupported notebook format: nbformat {str(major)[:12]}.")
    try:
        if major == 4:
            # nbformat.v4's reader, without its from_dict pass (the nodes are made already)
            nb = strip_transient(rejoin_lines(raw))
        else:
            nb = nbformat.versions[major].to_notebook_json(raw)
        if major != 4:
            nb = nbformat.convert(nb, 4)
            for cell in nb.get("cells", ()):
                if isinstance(cell, dict):
                    cell.pop("id", None)  # random ids from the conversion: derive them instead
    except Exception as exc:  # nbformat raises many kinds on malformed input
        summary = ("Not a notebook: nbformat cannot read it." if "nbformat" in raw
                   else "Not a notebook: no nbformat version in it.")
        raise NotebookError(f"Notebook cannot be read: {_describe(exc)}", summary) from None
    if has_cell_ids(nb) and isinstance(nb.get("cells"), list):
        cells = nb["cells"]
        _fill_cell_ids(cells, [c.get("id") if isinstance(c, dict) else None for c in cells])
    if strict:
        validate_notebook(nb)
    return nb


def _parse_json(source: str | bytes | bytearray | memoryview) -> Any:
    """The JSON of a notebook file; a v4 notebook's objects that nbformat's reader reaches by
    attribute (the notebook, its metadata, its cells, their metadata and outputs) are
    NotebookNodes, the values inside them plain dicts and lists.

    orjson parses it (three times faster than ``json``; it reads integers wider than 64 bits
    as floats). JSON that orjson refuses and Python's ``json`` reads, as nbformat does
    (``NaN``, ``Infinity``, lone surrogates), is read by ``json``, with every object a
    NotebookNode.
    """
    try:
        raw = orjson.loads(source)
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(raw, dict) and raw.get("nbformat") == 4:
            return _v4_nodes(raw)
        return from_dict(raw)
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            source = bytes(source).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotebookError(f"Notebook is not UTF-8 text: {exc}",
                                "Not a notebook: the file is not UTF-8 text.") from None
    try:
        return json.loads(source, object_hook=NotebookNode)
    except ValueError as exc:
        raise NotebookError(f"Notebook is not valid JSON: {exc}",
                            "Not a notebook: the file is not valid JSON.") from None


def _v4_nodes(raw: dict[str, Any]) -> NotebookNode:
    # made from the inside out: a NotebookNode checks every value set on it
    if isinstance(raw.get("metadata"), dict):
        raw["metadata"] = NotebookNode(raw["metadata"])
    cells = raw.get("cells")
    if isinstance(cells, list):
        for index, cell in enumerate(cells):
            if not isinstance(cell, dict):
                continue
            if isinstance(cell.get("metadata"), dict):
                cell["metadata"] = NotebookNode(cell["metadata"])
            outputs = cell.get("outputs")
            if isinstance(outputs, list):
                cell["outputs"] = [NotebookNode(output) if isinstance(output, dict) else output
                                   for output in outputs]
            cells[index] = NotebookNode(cell)
    return NotebookNode(raw)


def document_cell_ids(nb: Mapping[str, Any]) -> list[str]:
    """The id each cell of ``nb`` gets in a document (:func:`load_into` gives these): its own
    where it has a usable, unique one, else one derived from its position and content."""
    cells = nb.get("cells")
    if not isinstance(cells, list):
        return []
    return _fill_cell_ids(cells, [c.get("id") if isinstance(c, Mapping) else None
                                  for c in cells], copy=True)


def validate_notebook(nb: Mapping[str, Any], *, tolerate: Collection[str] = ()) -> None:
    """Check a notebook against its nbformat JSON schema, without changing it.

    Unlike ``nbformat.validate`` this never repairs anything: missing or duplicated cell ids
    are errors here.

    :param tolerate: kinds of schema deviations that are not errors (see
        :class:`~jupyter_ydjango.formats.nbshape.FileShape`: those its file had already).
    :raises NotebookError: naming the first problem found and where it is.
    """
    if not isinstance(nb, Mapping):
        raise NotebookError(f"A notebook must be a JSON object, not {type(nb).__name__}")
    major, minor = get_version(nb)
    if major != 4 or not isinstance(minor, int):
        raise NotebookError(
            f"Only nbformat 4 notebooks can be validated and written, not {major!r}.{minor!r}"
        )
    cells = nb.get("cells")
    if isinstance(cells, list) and minor >= 5:
        seen: set[Any] = set()
        for index, cell in enumerate(cells):
            if not isinstance(cell, Mapping) or "id" not in cell:
                continue  # the schema reports these
            cell_id = cell["id"]
            if isinstance(cell_id, str) and cell_id in seen:
                raise NotebookError(
                    f"Invalid notebook: cells/{index}: duplicate cell id {cell_id!r}"
                )
            seen.add(cell_id)
    if not tolerate:
        try:
            # The verdict comes from jsonschema-rs (some 30 times faster than nbformat's
            # fastjsonschema on a large notebook); nbformat's validator only describes errors.
            error = None if is_valid(nb) else next(iter_validate(nb), None)
        except Exception as exc:  # malformed enough to break the validator itself
            raise NotebookError(f"Invalid notebook: {_describe(exc)}") from None
        if error is not None:
            where = "/".join(str(part) for part in getattr(error, "absolute_path", ()) or ())
            message = getattr(error, "message", None) or str(error).splitlines()[0]
            raise NotebookError(f"Invalid notebook: {where or '(top level)'}: {message}")
        return
    for deviation in schema_deviations(nb):
        if deviation.kind not in tolerate:
            raise NotebookError(f"Invalid notebook: {deviation.message}")


def write_notebook(nb: Mapping[str, Any], *, copy: bool = True,
                   tolerate: Collection[str] = ()) -> str:
    """Serialise a notebook exactly as Jupyter's file manager writes it.

    That is ``nbformat.write(nb, f, version=NO_CONVERT)``: JSON with one-space indents, sorted
    keys, non-ASCII characters as they are, multi-line strings split into lists of lines,
    transient fields (``metadata.trusted``, ``orig_nbformat``, ...) dropped, and a trailing
    newline. A file Jupyter wrote and that went through :func:`read_notebook`,
    :func:`load_into`, :func:`notebook_from_doc` and this function comes out byte-identical
    (except for markdown/raw cells' empty ``"attachments": {}``, which the doc omits).

    nbformat's writer works on a deep copy of the notebook, which takes a fifth of the time;
    with ``copy=False`` a ``NotebookNode`` the caller does not need any more (what
    :func:`notebook_from_doc` returns) is changed in place instead. A plain mapping is never
    changed: it is converted to a new tree of nodes anyway.

    :param tolerate: kinds of schema deviations written anyway (those the file had already,
        see :func:`validate_notebook`).
    :raises NotebookError: the notebook is invalid (nothing is ever written for one).
    """
    validate_notebook(nb, tolerate=tolerate)
    if not isinstance(nb, NotebookNode):
        nb, copy = nbformat.from_dict(nb), False  # a tree of our own
    elif copy:
        nb = deepcopy(nb)
    # nbformat.v4's JSONWriter.writes (what nbformat.writes does after validating), with a
    # line splitter that also takes the cells nbformat's refuses (a code cell without
    # outputs, which Jupyter opens, made its writer raise)
    text = json.dumps(strip_transient(_split_lines(nb)), cls=BytesEncoder, indent=1,
                      sort_keys=True, separators=(",", ": "), ensure_ascii=False)
    return text if text.endswith("\n") else text + "\n"


def _split_lines(nb: NotebookNode) -> NotebookNode:
    """``nbformat.v4.rwbase.split_lines``, in place, for any cell nbformat can read: fields a
    cell lacks are skipped instead of raising."""
    for cell in nb.get("cells", ()):
        if not isinstance(cell, dict):
            continue
        source = cell.get("source")
        if isinstance(source, str):
            cell["source"] = source.splitlines(True)
        attachments = cell.get("attachments")
        if isinstance(attachments, dict):
            for attachment in attachments.values():
                if isinstance(attachment, dict):
                    _split_mimebundle(attachment)
        outputs = cell.get("outputs") if cell.get("cell_type") == "code" else None
        for output in outputs if isinstance(outputs, list) else ():
            if not isinstance(output, dict):
                continue
            kind = output.get("output_type")
            if kind in ("execute_result", "display_data") and isinstance(output.get("data"),
                                                                          dict):
                _split_mimebundle(output["data"])
            elif kind == "stream" and isinstance(output.get("text"), str):
                output["text"] = output["text"].splitlines(True)
    return nb


# --- nbformat -> YDoc -------------------------------------------------------------------------


def load_into(
    doc: pycrdt.Doc,
    nb: Mapping[str, Any],
    *,
    path: str | None = None,
    content_hash: str | None = None,
) -> None:
    """Fill an empty document with a notebook, in one transaction.

    Deterministic: loading the same notebook into two docs with the same client id creates the
    same Yjs items with the same ids (a room rebuilt from its file does not duplicate cells for
    clients that hold the old items).

    :param doc: a pycrdt document with no cells and no notebook metadata yet.
    :param nb: a valid nbformat 4 notebook (as :func:`read_notebook` returns).
    :param path: stored as ``state.path`` when given (the server keeps it current).
    :param content_hash: stored as ``state.hash`` when given (the contents manager's hash of the
        file the notebook came from).
    :raises NotebookError: the document is not empty, or ``nb`` cannot be a notebook document.
    """
    with doc.transaction():
        for _ in load_steps(doc, nb, path=path, content_hash=content_hash):
            pass


def load_steps(
    doc: pycrdt.Doc,
    nb: Mapping[str, Any],
    *,
    path: str | None = None,
    content_hash: str | None = None,
    cells_per_step: int = 200,
) -> Iterator[None]:
    """:func:`load_into` in several transactions of at most ``cells_per_step`` cells, pausing
    (yielding) after each: the same operations in the same order, so the same Yjs items.

    A big notebook's update can then be applied to a room as several smaller updates, none of
    which holds the event loop for long.
    """
    ycells = doc.get(CELLS, type=pycrdt.Array)
    ymeta = doc.get(META, type=pycrdt.Map)
    ystate = doc.get(STATE, type=pycrdt.Map)
    if len(ycells):
        raise NotebookError(f"The document already has {len(ycells)} cells; load into an empty one")
    if len(ymeta):
        raise NotebookError("The document already has notebook metadata; load into an empty one")
    major, minor = get_version(nb)
    if major != 4 or not isinstance(minor, int):
        raise NotebookError(f"Only nbformat 4 notebooks can be loaded, not {major!r}.{minor!r}")
    cells = nb.get("cells")
    if not isinstance(cells, list):
        raise NotebookError("The notebook has no list of cells")
    metadata = nb.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise NotebookError("The notebook's metadata is not a JSON object")

    ids = [cell.get("id") if isinstance(cell, Mapping) else None for cell in cells]
    usable = all(isinstance(cell_id, str) and cell_id for cell_id in ids)
    if not usable or len(set(ids)) != len(ids):
        ids = _fill_cell_ids(cells, ids, copy=True)
    entries = [_cell_entries(cell, cell_id) for cell, cell_id in zip(cells, ids, strict=True)]
    # A notebook from a newer nbformat may have more top-level fields: kept in ``meta`` too
    # (the frontend and jupyter_ydoc ignore them) so that saving does not lose them.
    future = (major, minor) > (4, _KNOWN_MINOR)
    meta = {
        key: _js_safe(value)
        for key, value in nb.items()
        if future and key not in _TOP_LEVEL_KEYS
    }
    meta.update(nbformat=major, nbformat_minor=minor, metadata=_JSONMap(metadata))

    with doc.transaction():
        for key in sorted(meta):
            ymeta[key] = _prelim(meta[key])
    # From the last cell to the first, each inserted at the start: yrs finds an index by walking
    # the array from its start, so appending cells one by one costs O(n²) (most of the build of
    # a 5,000-cell notebook), while an insertion at the start costs the same for every cell.
    for stop in range(len(entries), 0, -cells_per_step):
        with doc.transaction() as txn:
            _prepend_cells(txn, ycells, entries[max(0, stop - cells_per_step):stop])
        yield
    with doc.transaction():
        ystate["dirty"] = False
        if path is not None:
            ystate["path"] = path
        if content_hash is not None:
            ystate["hash"] = content_hash
    yield


# Maps are made from dicts in sorted key order: pycrdt integrates a prelim map's entries in
# the dict's order, and two loads of one file with one client id (a room rebuilt from its
# file) must give every item the same id, or clients holding the old items silently diverge.
# Plain JSON values (a dict inside metadata, an output's data) are single items, whatever
# their internal order.


class _JSONMap(dict):  # type: ignore[type-arg]
    """Marks a JSON object to be stored as a YMap of JSON values."""


class _Text(str):
    """Marks a string to be stored as a YText."""

    __slots__ = ()


class _Outputs(list):  # type: ignore[type-arg]
    """Marks a list of outputs (each a dict of entries) to be stored as a YArray of YMap."""


def _prelim(value: Any) -> Any:
    """The value to store for an entry: a shared type where marked, else the JSON value."""
    if isinstance(value, _Text):
        return pycrdt.Text(str(value))
    if isinstance(value, _JSONMap):
        return pycrdt.Map({key: _js_safe(value[key]) for key in sorted(value)})
    if isinstance(value, _Outputs):
        return pycrdt.Array([_prelim_map(output) for output in value])
    return value


def _prelim_map(entries: Mapping[str, Any]) -> pycrdt.Map:
    return pycrdt.Map({key: _prelim(entries[key]) for key in sorted(entries)})


def _prepend_cells(txn: pycrdt.Transaction, ycells: pycrdt.Array,
                   entries: list[dict[str, Any]]) -> None:
    """Insert cells (as :func:`_cell_entries` gives them, in order) at the start of ``ycells``,
    in the open ``txn``, the last one first.

    The same operations as ``ycells.insert(0, _prelim_map(cell))`` for each cell, so the same
    Yjs items, but made on pycrdt's native types directly: the public API wraps every entry in
    Python objects and a nested transaction, two thirds of a notebook's build. Where the native
    types are not what this expects, the public API does it.
    """
    native_txn = getattr(txn, "_txn", None)
    array = getattr(ycells, "_integrated", None)
    if native_txn is None or not hasattr(array, "insert_map_prelim"):
        for cell in reversed(entries):
            ycells.insert(0, _prelim_map(cell))
        return
    for cell in reversed(entries):
        _fill_native(native_txn, array.insert_map_prelim(native_txn, 0), cell)


def _fill_native(txn: Any, ymap: Any, entries: Mapping[str, Any]) -> None:
    """:func:`_prelim_map`'s entries set on a native (integrated, empty) map."""
    for key in sorted(entries):
        value = entries[key]
        if isinstance(value, _Text):
            ymap.insert_text_prelim(txn, key).insert(txn, 0, str(value))
        elif isinstance(value, _JSONMap):
            inner = ymap.insert_map_prelim(txn, key)
            for name in sorted(value):
                inner.insert(txn, name, _js_safe(value[name]))
        elif isinstance(value, _Outputs):
            outputs = ymap.insert_array_prelim(txn, key)
            for index, output in enumerate(value):
                _fill_native(txn, outputs.insert_map_prelim(txn, index), output)
        else:
            ymap.insert(txn, key, value)


def _cell_entries(cell: Any, cell_id: str) -> dict[str, Any]:
    """What a cell's YMap holds, with the shared types marked (see :func:`_fill_map`)."""
    if not isinstance(cell, Mapping):
        raise NotebookError(f"A cell must be a JSON object, not {type(cell).__name__}")
    cell_type = cell.get("cell_type")
    entries: dict[str, Any] = {}
    for key, value in cell.items():
        if key == "source":
            entries[key] = _Text(_joined(value))
        elif key == "metadata":
            if not isinstance(value, Mapping):
                raise NotebookError(f"Cell {cell_id!r}: metadata is not a JSON object")
            entries[key] = _JSONMap(value)
        elif key == "outputs" and cell_type == "code":
            if not isinstance(value, list):
                raise NotebookError(f"Cell {cell_id!r}: outputs is not a list")
            entries[key] = _Outputs(_output_entries(output, cell_id) for output in value)
        elif key == "attachments" and cell_type in ("markdown", "raw") and not value:
            continue
        elif key not in ("id", "execution_state"):
            entries[key] = _js_safe(value)
    entries["id"] = cell_id
    # every cell has a YText source for the frontend's editor to bind to, even a cell (of a
    # future type) whose file had none; the file's shape keeps it out of the saved file
    entries.setdefault("source", _Text(""))
    entries.setdefault("metadata", _JSONMap())
    if cell_type == "code":
        entries.setdefault("outputs", _Outputs())
        entries.setdefault("execution_count", None)
        entries["execution_state"] = "idle"
    return entries


def _output_entries(output: Any, cell_id: str) -> dict[str, Any]:
    if not isinstance(output, Mapping):
        raise NotebookError(f"Cell {cell_id!r}: an output is not a JSON object")
    entries = {key: _js_safe(value) for key, value in output.items()}
    if output.get("output_type") == "stream" and "text" in output:
        entries["text"] = _Text(_joined(output["text"]))
    return entries


def replace_content(doc: pycrdt.Doc, nb: Mapping[str, Any]) -> bool:
    """Edit a loaded document so that it holds ``nb``, changing only what differs.

    For a notebook changed on disk by someone else: unchanged cells keep their Yjs items (and
    the cursors in them); changed, added and removed cells are deleted and inserted; notebook
    metadata is updated key by key. One transaction, so clients see one change.

    :returns: whether the document changed.
    :raises NotebookError: ``nb`` cannot be a notebook document.
    """
    major, minor = get_version(nb)
    if major != 4 or not isinstance(minor, int):
        raise NotebookError(f"Only nbformat 4 notebooks can be loaded, not {major!r}.{minor!r}")
    new_cells = nb.get("cells")
    if not isinstance(new_cells, list):
        raise NotebookError("The notebook has no list of cells")
    metadata = nb.get("metadata", {})
    if not isinstance(metadata, Mapping):
        raise NotebookError("The notebook's metadata is not a JSON object")
    old = notebook_from_doc(doc)
    old_keys = [_cell_key(cell) for cell in old["cells"]]
    new_keys = [_cell_key(cell) for cell in new_cells]
    ids = [cell.get("id") if isinstance(cell, Mapping) else None for cell in new_cells]
    if not all(isinstance(cell_id, str) and cell_id for cell_id in ids) or len(set(ids)) != len(
        ids
    ):
        ids = _fill_cell_ids(new_cells, ids, copy=True)
    opcodes = difflib.SequenceMatcher(None, old_keys, new_keys, autojunk=False).get_opcodes()
    edits = [op for op in opcodes if op[0] != "equal"]
    ymeta = doc.get(META, type=pycrdt.Map)
    old_metadata = old.get("metadata", {})
    meta_changed = (
        dict(old_metadata) != dict(metadata)
        or old["nbformat"] != major
        or old["nbformat_minor"] != minor
    )
    if not edits and not meta_changed:
        return False
    ycells = doc.get(CELLS, type=pycrdt.Array)
    with doc.transaction():
        for tag, i1, i2, j1, j2 in reversed(edits):  # from the end: indices stay valid
            if tag in ("replace", "delete"):
                del ycells[i1:i2]
            if tag in ("replace", "insert"):
                for offset, j in enumerate(range(j1, j2)):
                    ycells.insert(i1 + offset, _prelim_map(_cell_entries(new_cells[j], ids[j])))
        if old["nbformat"] != major:
            ymeta["nbformat"] = major
        if old["nbformat_minor"] != minor:
            ymeta["nbformat_minor"] = minor
        if dict(old_metadata) != dict(metadata):
            ymetadata = ymeta.get("metadata")
            if not isinstance(ymetadata, pycrdt.Map):
                ymeta["metadata"] = _prelim(_JSONMap(metadata))
            else:
                for key in [key for key in old_metadata if key not in metadata]:
                    del ymetadata[key]
                for key in sorted(metadata):
                    if old_metadata.get(key) != metadata[key]:
                        ymetadata[key] = _js_safe(metadata[key])
    return True


def _cell_key(cell: Any) -> str:
    """A cell's content as a comparable string (multi-line text joined)."""
    if not isinstance(cell, Mapping):
        return repr(cell)
    normal = dict(cell)
    normal.pop("execution_state", None)
    if "source" in normal:
        normal["source"] = _joined(normal["source"])
    if normal.get("cell_type") in ("markdown", "raw") and not normal.get("attachments", True):
        del normal["attachments"]
    outputs = normal.get("outputs")
    if isinstance(outputs, list):
        normal["outputs"] = [
            {**out, "text": _joined(out["text"])}
            if isinstance(out, Mapping) and "text" in out
            else out
            for out in outputs
        ]
    return json.dumps(normal, sort_keys=True, default=str)


# --- YDoc -> nbformat -------------------------------------------------------------------------


def doc_json(doc: pycrdt.Doc) -> tuple[str, str]:
    """The notebook of a document as JSON text: ``(meta, cells)``.

    A copy made quickly on the document's thread (pycrdt writes the JSON), which
    :func:`notebook_from_json` reads anywhere: the slow part of reading a notebook out of a
    document can run in another thread or process.
    """
    with doc.transaction():
        return str(doc.get(META, type=pycrdt.Map)), str(doc.get(CELLS, type=pycrdt.Array))


def notebook_from_doc(doc: pycrdt.Doc) -> NotebookNode:
    """Read the notebook a document holds (the doc is not changed): :func:`notebook_from_json`
    of :func:`doc_json`."""
    return notebook_from_json(*doc_json(doc))


def notebook_from_json(meta_json: str, cells_json: str) -> NotebookNode:
    """Read the notebook of a document's JSON (see :func:`doc_json`).

    Numbers become ints again where they are integers; ``execution_state`` and, for nbformat
    4.0-4.4, cell ids are dropped; empty ``attachments`` are dropped; a cell of a known type
    keeps only the keys nbformat allows for it (unless the notebook is from a newer nbformat
    than this one knows). A cell without an id, or with the id of an earlier cell, gets a
    derived id in the result (nbformat 4.5+), so that the notebook stays valid and no cell is
    lost.

    :returns: the notebook; pass it to :func:`write_notebook` to save it.
    :raises NotebookError: the document does not hold a notebook (no nbformat version).
    """
    # The JSON of the doc is the fastest way out (faster than converting the shared types from
    # Python and casting numbers); it writes integral numbers as integers, so ints come back.
    meta = parse_doc_json(meta_json)
    cells = parse_doc_json(cells_json)
    major, minor = meta.get("nbformat"), meta.get("nbformat_minor")
    if not isinstance(major, int) or not isinstance(minor, int):
        raise NotebookError(
            f"The document holds no notebook (meta.nbformat={major!r}, "
            f"meta.nbformat_minor={minor!r})"
        )
    with_ids = has_cell_ids({"nbformat": major, "nbformat_minor": minor})
    known = (major, minor) <= (4, _KNOWN_MINOR)
    out_cells: list[dict[str, Any]] = []
    for cell in cells:
        if not isinstance(cell, dict):
            raise NotebookError(f"A cell of the document is not a map: {cell!r:.80}")
        cell.pop("execution_state", None)
        cell_type = cell.get("cell_type")
        allowed = CELL_KEYS.get(cell_type) if known and isinstance(cell_type, str) else None
        if allowed is not None:
            for key in [key for key in cell if key not in allowed]:
                del cell[key]
            cell.setdefault("source", "")
            cell.setdefault("metadata", NotebookNode())
            if cell_type == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
        if cell_type in ("markdown", "raw") and "attachments" in cell and not cell["attachments"]:
            del cell["attachments"]
        if not with_ids:
            cell.pop("id", None)
        out_cells.append(cell)
    if with_ids:
        _fill_cell_ids(out_cells, [cell.get("id") for cell in out_cells])
    metadata = meta.get("metadata")
    # top-level fields of a notebook from a newer nbformat live in meta (see load_into)
    notebook = NotebookNode() if known else meta
    notebook.update(
        cells=out_cells,
        metadata=metadata if isinstance(metadata, dict) else NotebookNode(),
        nbformat=major,
        nbformat_minor=minor,
    )
    return notebook


# --- helpers ----------------------------------------------------------------------------------


def _fill_cell_ids(
    cells: list[Any], ids: list[Any], *, copy: bool = False
) -> list[str]:
    """Give every cell without a usable id, or with an earlier cell's id, a derived one.

    A derived id is 8 hex digits of a hash of the cell's position and content, unique in the
    notebook (nbformat's random ids have the same form). With ``copy`` the cells are left alone
    and only the list of ids is returned; otherwise the cells' ``id`` fields are set too.
    """
    wanted = [cell_id if isinstance(cell_id, str) and cell_id else None for cell_id in ids]
    taken = {cell_id for cell_id in wanted if cell_id is not None}
    seen: set[str] = set()
    result: list[str] = []
    for index, (cell, cell_id) in enumerate(zip(cells, wanted, strict=True)):
        if cell_id is None or cell_id in seen:
            cell_id = _derive_id(index, cell, taken)
            taken.add(cell_id)
            if not copy and isinstance(cell, dict):
                cell["id"] = cell_id
        seen.add(cell_id)
        result.append(cell_id)
    return result


def _derive_id(index: int, cell: Any, taken: set[str]) -> str:
    cell_type = cell.get("cell_type", "") if isinstance(cell, Mapping) else ""
    source = _joined(cell.get("source", "")) if isinstance(cell, Mapping) else ""
    seed = f"{index}\0{cell_type}\0{source}".encode("utf-8", "surrogatepass")
    salt = 0
    while True:
        digest = hashlib.sha256(seed + salt.to_bytes(4, "big")).hexdigest()[:8]
        if digest not in taken:
            return digest
        salt += 1


def _joined(value: Any) -> str:
    """nbformat multi-line text (a string or a list of lines) as one string."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    raise NotebookError(f"Expected text (a string or a list of strings), got {value!r:.80}")


def _js_safe(value: Any) -> Any:
    """``value`` with integers beyond JavaScript's safe range as floats (else unchanged)."""
    if not _needs_js_fix((value,)):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, Mapping):
        return {key: _js_safe(item) for key, item in value.items()}
    return [_js_safe(item) for item in value]


def _needs_js_fix(values: Iterable[Any]) -> bool:
    """Whether any of ``values`` is or holds an integer beyond JavaScript's safe range.

    :raises NotebookError: one is not a JSON value.
    """
    # exact types first: this walks every value of a notebook, and the checks against the
    # abstract Mapping (or a tuple of classes) cost several times more
    for item in values:
        kind = type(item)
        if kind is str or kind is float or kind is bool or item is None:
            continue
        if kind is dict or kind is NotebookNode:
            nested: Iterable[Any] = item.values()
        elif kind is list:
            nested = item
        elif isinstance(item, (str, float)):  # bool is an int
            continue
        elif isinstance(item, int):
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return True
            continue
        elif isinstance(item, Mapping):
            nested = item.values()
        elif isinstance(item, (list, tuple)):
            nested = item
        else:
            raise NotebookError(f"Not a JSON value: {item!r:.80}")
        if _needs_js_fix(nested):
            return True
    return False


def parse_doc_json(text: str) -> Any:
    """Parse the JSON of a shared type: objects as NotebookNodes, numbers as JSON has them.

    pycrdt writes every integral float as an integer literal, so integers come back as ints; only
    those too large to have been integers in JavaScript become floats again (they were floats
    in the file, like ``1e+300``, or BigInts, which have no place in a notebook).
    """
    return json.loads(text, object_hook=NotebookNode, parse_int=_parse_int)


def _parse_int(literal: str) -> int | float:
    value = int(literal)
    return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else float(value)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (KeyError, AttributeError)) and len(exc.args) == 1:
        return f"missing field {exc.args[0]!r}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
