"""A notebook file's own shape, kept when the room writes the notebook back.

Jupyter opens notebooks that do not follow their nbformat schema to the letter (it logs the
validation errors and serves them anyway), and writes back what it was given. The room maps
a notebook to the document schema JupyterLab edits and back (:mod:`.notebook`), which has
opinions: every cell gets the fields its type requires, nbformat 4.0-4.4 notebooks lose cell
ids, fields the schema does not know are dropped. :class:`FileShape` records what a file has
that this mapping would change, and :func:`conform` changes the notebook read from a document
back to that shape before it is written:

* fields a cell lacked in the file (``source``, ``outputs``, ``execution_count``) are not
  written with an empty value the mapping made up;
* fields of cells beyond the schema (e.g. cell ``id`` in an nbformat 4.4 file, as VS Code and
  Jupytext write them) are written again, from the document, which keeps them;
* the file's schema errors are tolerated when the notebook is validated before writing (by
  kind, see :func:`error_kinds`), and no others: an edit never makes a valid notebook invalid.

Everything here is pure nbformat/JSON work (no CRDT object) and may run in a worker thread.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nbformat.reader import get_version
from nbformat.validator import get_validator, iter_validate

__all__ = [
    "CELL_KEYS", "Deviation", "FileShape", "conform", "error_kinds", "has_cell_ids",
    "schema_deviations", "shape_of",
]

#: The fields nbformat 4 allows in a cell, per cell type (``id`` from 4.5 on). Other keys in a
#: doc cell (``execution_state``, or anything a client adds) are not written to files of a
#: known version.
CELL_KEYS: dict[str, frozenset[str]] = {
    "code": frozenset({"id", "cell_type", "source", "metadata", "execution_count", "outputs"}),
    "markdown": frozenset({"id", "cell_type", "source", "metadata", "attachments"}),
    "raw": frozenset({"id", "cell_type", "source", "metadata", "attachments"}),
}

#: Cell fields the document mapping gives every cell (of the types that have them), with the
#: value a cell that lacked the field gets. (A cell without ``metadata`` is not opened: nbformat,
#: and so Jupyter, cannot read it.)
DEFAULTED: dict[str, Any] = {"source": "", "outputs": [], "execution_count": None}


@dataclass(frozen=True)
class Deviation:
    """One deviation of a notebook from its nbformat schema."""

    #: What kind of deviation, independent of where it is (cell indices are ``*``):
    #: ``cells/*: missing source``, ``cells/*: unexpected id``, ...
    kind: str
    #: nbformat's (jsonschema's) message, with where it is.
    message: str


@dataclass(frozen=True)
class FileShape:
    """What a notebook file has that the document mapping would change (see the module)."""

    #: Per cell id (as the document has it): the defaulted fields that cell lacked.
    absent: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Cell fields beyond the schema that the file's cells carry (kept from the document).
    extra_cell_keys: frozenset[str] = frozenset()
    #: Kinds of schema errors the file has: tolerated when writing it back.
    tolerated: frozenset[str] = frozenset()
    #: The file's schema errors, for the log.
    deviations: tuple[Deviation, ...] = ()

    @property
    def plain(self) -> bool:
        """Whether writing the notebook needs nothing of this shape (the common case)."""
        return not (self.absent or self.extra_cell_keys or self.tolerated)


def is_valid(nb: Mapping[str, Any]) -> bool:
    """Whether ``nb`` follows its nbformat 4 schema, as nbformat derives it (relaxed for minor
    versions newer than it knows), checked by jsonschema-rs: some 30 times faster than
    nbformat's own fastjsonschema on a large notebook."""
    major, minor = get_version(nb)
    if major != 4 or type(minor) is not int or minor < 0:
        return False
    try:
        return bool(_schema_validator(minor).is_valid(nb))
    except Exception:  # not even JSON-like: nbformat's validator says what is wrong
        return False


@functools.cache
def _schema_validator(minor: int) -> Any:
    # imported at the first notebook (~4 ms), not at start: it holds ~4 MB
    import jsonschema_rs

    return jsonschema_rs.Draft4Validator(get_validator(4, minor, name="jsonschema")._schema)


def schema_deviations(nb: Mapping[str, Any]) -> list[Deviation]:
    """Every deviation of ``nb`` from its nbformat schema (nothing is repaired)."""
    if is_valid(nb):
        return []
    try:
        errors = list(iter_validate(nb))
    except Exception as exc:  # malformed enough to break the validator itself
        return [Deviation("(unvalidatable)", f"{type(exc).__name__}: {exc}")]
    deviations = []
    for error in errors:
        where = "/".join(str(part) for part in getattr(error, "absolute_path", ()) or ())
        message = f"{where or '(top level)'}: {error.message}"
        deviations.extend(Deviation(kind, message) for kind in error_kinds(error))
    return deviations


def error_kinds(error: Any) -> list[str]:
    """The kinds of a jsonschema validation error: where (indices as ``*``) and what, without
    the values involved, so that the same deviation in another cell is the same kind."""
    where = "/".join("*" if isinstance(part, int) else str(part)
                     for part in getattr(error, "absolute_path", ()) or ()) or "(top level)"
    validator, instance = error.validator, error.instance
    if validator == "required" and isinstance(instance, Mapping):
        missing = [name for name in error.validator_value if name not in instance]
        return [f"{where}: missing {name}" for name in missing] or [f"{where}: required"]
    if validator == "additionalProperties" and isinstance(instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extra = [key for key in instance
                 if key not in allowed and not any(re.search(p, key) for p in patterns)]
        return [f"{where}: unexpected {key}" for key in extra] or [f"{where}: unexpected"]
    if validator in ("oneOf", "anyOf") and isinstance(instance, Mapping):
        tag = instance.get("cell_type", instance.get("output_type"))
        return [f"{where}: {validator} {tag!r}"]
    value = json.dumps(error.validator_value, sort_keys=True, default=str)
    return [f"{where}: {validator} {value[:200]}"]


def shape_of(nb: Mapping[str, Any], cell_ids: Iterable[str],
             deviations: list[Deviation] | None = None) -> FileShape:
    """The shape of a notebook as read from its file.

    :param nb: the notebook as :func:`~.notebook.read_notebook` gives it.
    :param cell_ids: the id each of its cells has in the document (see
        :func:`~.notebook.document_cell_ids`).
    :param deviations: its schema deviations, if known already (else they are found here).
    """
    if deviations is None:
        deviations = schema_deviations(nb)
    cells = nb.get("cells")
    cells = cells if isinstance(cells, list) else []
    absent: dict[str, frozenset[str]] = {}
    extra: set[str] = set()
    for cell, cell_id in zip(cells, cell_ids, strict=False):
        if not isinstance(cell, Mapping):
            continue
        lacking = frozenset(key for key in _defaulted_keys(cell) if key not in cell)
        if lacking:
            absent[cell_id] = lacking
        allowed = CELL_KEYS.get(cell.get("cell_type"))  # type: ignore[arg-type]
        if allowed is not None:
            extra.update(key for key in cell if key not in allowed)
    if has_cell_ids(nb):
        extra.discard("id")
    else:  # before 4.5, ids are extra: kept if every cell of the file has one
        if cells and all(isinstance(c, Mapping) and "id" in c for c in cells):
            extra.add("id")
        else:
            extra.discard("id")
    return FileShape(
        absent=absent,
        extra_cell_keys=frozenset(extra),
        tolerated=frozenset(deviation.kind for deviation in deviations),
        deviations=tuple(deviations),
    )


def conform(nb: dict[str, Any], shape: FileShape | None,
            doc_cells: list[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Give the notebook read from a document (:func:`~.notebook.notebook_from_doc`) the
    shape of its file, in place; returns it.

    :param doc_cells: the document's cells as plain JSON, in order (needed when
        ``shape.extra_cell_keys`` is not empty: the extra fields are taken from there).
    """
    if shape is None or shape.plain:
        return nb
    cells = nb.get("cells", [])
    if shape.extra_cell_keys and doc_cells is not None:
        for cell, doc_cell in zip(cells, doc_cells, strict=False):
            for key in shape.extra_cell_keys:
                if key in doc_cell and key not in cell:
                    cell[key] = doc_cell[key]
    if shape.absent:
        ids = ([c.get("id") for c in doc_cells] if doc_cells is not None
               else [c.get("id") for c in cells])
        for cell, cell_id in zip(cells, ids, strict=False):
            for key in shape.absent.get(cell_id, ()):  # type: ignore[arg-type]
                if key in cell and cell[key] == DEFAULTED[key]:
                    del cell[key]
    return nb


def _defaulted_keys(cell: Mapping[str, Any]) -> tuple[str, ...]:
    if cell.get("cell_type") == "code":
        return ("source", "outputs", "execution_count")
    return ("source",)


def has_cell_ids(nb: Mapping[str, Any]) -> bool:
    """Whether the notebook's format has cell ids (nbformat 4.5 and later)."""
    major, minor = get_version(nb)
    return isinstance(major, int) and isinstance(minor, int) and (major, minor) >= (4, 5)
