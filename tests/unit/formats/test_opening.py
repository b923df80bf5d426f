"""Opening whatever Jupyter opens, and writing it back as it was (``formats``, ``nbshape``).

Jupyter's contents manager opens a notebook that nbformat can read even when it does not
follow its schema (it logs the validation errors), and refuses only what nbformat cannot read.
The room does the same, and writes such a notebook back in its own shape: nothing made up
that the file never had, nothing dropped that it had, and no new deviation from the schema.

Every notebook of the shared fixture folder (``NOTEBOOK_FIXTURES_DIR``, skipped when absent)
and the generated cases of :data:`notebooks.TOLERATED` and :data:`notebooks.REFUSED` go
file -> :meth:`NotebookFormat.parse` -> a y-py document -> edit -> :meth:`NotebookFormat.read`
-> :meth:`NotebookFormat.render`, and are compared with the file and with nbformat's reading.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import nbformat
import pycrdt
import pytest
from nbformat import NotebookNode
from nbformat.v4.rwbase import rejoin_lines, strip_transient
from notebooks import FIXTURES, REFUSED, TOLERATED, plain

from jupyter_ydjango.formats.builtin import FormatError, NotebookFormat, ParsedNotebook
from jupyter_ydjango.formats.notebook import document_cell_ids

FORMAT = NotebookFormat()



def _cases() -> list[Any]:
    params = [pytest.param(name, id=name) for name in TOLERATED]
    if FIXTURES.is_dir():
        params += [pytest.param(p.name, id=p.name) for p in sorted(FIXTURES.glob("*.ipynb"))]
    else:
        params.append(pytest.param("", id="no-fixtures", marks=pytest.mark.skip(
            reason=f"notebook fixture folder {FIXTURES} is absent")))
    return params


def file_text(case: str) -> str:
    return TOLERATED[case] if case in TOLERATED else (FIXTURES / case).read_text("utf-8")


def as_jupyter_reads(text: str) -> NotebookNode:
    """What Jupyter's contents manager serves for a file (its validation errors logged)."""
    return nbformat.reads(text, as_version=4)


def normal(text: str) -> Any:
    """A file's notebook as plain JSON with nbformat's normalisations (multi-line strings
    joined, transient fields dropped): how two files holding the same notebook compare."""
    return plain(strip_transient(rejoin_lines(json.loads(text, object_hook=NotebookNode))))


def loaded(parsed: ParsedNotebook) -> pycrdt.Doc:
    doc = pycrdt.Doc(client_id=0)
    FORMAT.load_into(doc, parsed, "case.ipynb", "0" * 64)
    return doc


def saved(doc: pycrdt.Doc, parsed: ParsedNotebook) -> str:
    """What the room writes for the document, in the file's shape."""
    return FORMAT.render(FORMAT.read(doc, parsed.shape), parsed.shape).decode("utf-8")


def expected_file(text: str, parsed: ParsedNotebook) -> Any:
    """The file as the room writes it back unchanged: itself, except that markdown and raw
    cells' empty attachments are left out (the document omits them, as jupyter_ydoc does)
    and cells without an id in an nbformat 4.5+ file get the id the document gave them (as
    Jupyter gives them one)."""
    expected = normal(text)
    ids = document_cell_ids(parsed.nb)
    with_ids = (expected["nbformat"], expected["nbformat_minor"]) >= (4, 5)
    for cell, cell_id in zip(expected["cells"], ids, strict=True):
        if cell.get("cell_type") in ("markdown", "raw") and cell.get("attachments") == {}:
            del cell["attachments"]
        if with_ids and "id" not in cell:
            cell["id"] = cell_id
    return expected


def doc_cells(doc: pycrdt.Doc) -> list[pycrdt.Map]:
    cells = doc.get("cells", type=pycrdt.Array)
    return [cells[index] for index in range(len(cells))]


def first_source_index(doc: pycrdt.Doc) -> int | None:
    for index, cell in enumerate(doc_cells(doc)):
        if isinstance(cell.get("source"), pycrdt.Text):
            return index
    return None


@pytest.mark.parametrize("case", _cases())
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
def test_opened_as_jupyter_opens_it(case: str) -> None:
    text = file_text(case)
    parsed = FORMAT.parse(text.encode("utf-8"))
    jupyter = as_jupyter_reads(text)
    for ours, theirs in zip(parsed.nb.cells, jupyter.cells, strict=True):
        if "id" in theirs and ours.get("id") != theirs["id"]:
            theirs["id"] = ours["id"]  # nbformat made up a random one; ours is derived
    assert plain(parsed.nb) == plain(jupyter)
    try:
        nbformat.validate(copy.deepcopy(jupyter))
        valid = True
    except nbformat.ValidationError:
        valid = False
    # the file's deviations are known (and logged by the room), and tolerated when it is
    # written back; a valid file tolerates none
    assert bool(parsed.shape.deviations) == (not valid) or parsed.nb.nbformat_minor >= 5
    if valid:
        assert not parsed.shape.tolerated


@pytest.mark.parametrize("case", _cases())
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
def test_written_back_in_its_own_shape(case: str) -> None:
    text = file_text(case)
    parsed = FORMAT.parse(text.encode("utf-8"))
    if json.loads(text).get("nbformat") != 4:
        pytest.skip("converted to nbformat 4 when opened, as Jupyter converts it")
    doc = loaded(parsed)
    expected = expected_file(text, parsed)
    assert normal(saved(doc, parsed)) == expected, "unchanged: written as it was"

    index = first_source_index(doc)
    if index is None:
        return
    cells = doc.get("cells", type=pycrdt.Array)
    with doc.transaction():
        source = cells[index]["source"]
        source.insert(len(str(source).encode("utf-8")), " # edited")
    expected["cells"][index]["source"] = expected["cells"][index].get("source", "") + " # edited"
    assert normal(saved(doc, parsed)) == expected, "edited: only the edit differs"


@pytest.mark.parametrize("case", _cases())
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
def test_every_cell_gets_a_source_text(case: str) -> None:
    doc = loaded(FORMAT.parse(file_text(case).encode("utf-8")))
    for cell in doc_cells(doc):
        assert isinstance(cell.get("source"), pycrdt.Text), str(cell)


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_as_jupyter_refuses_it(case: str) -> None:
    data, summary = REFUSED[case]
    with pytest.raises(Exception):  # noqa: B017 (nbformat raises many kinds)
        as_jupyter_reads(data.decode("utf-8"))
    with pytest.raises(FormatError) as refused:
        FORMAT.parse(data)
    assert refused.value.summary == summary
    assert len(summary.encode("utf-8")) <= 56, "it fits in a websocket close frame"


# --- what saving tolerates ------------------------------------------------------------------------


def test_ids_of_a_44_file_are_kept_also_for_new_cells() -> None:
    """An nbformat 4.4 file whose cells carry ids keeps them, and the cells people add get
    theirs written too (the file's kind of deviation); a 4.4 file without ids gets none."""
    text = TOLERATED["4.4 with cell ids"]
    parsed = FORMAT.parse(text.encode())
    doc = loaded(parsed)
    cells = doc.get("cells", type=pycrdt.Array)
    with doc.transaction():  # what JupyterLab does when someone adds a cell
        new = pycrdt.Map()
        cells.append(new)
        for key, value in {"cell_type": "code", "id": "added-by-lab", "execution_count": None,
                           "metadata": {}, "outputs": [], "source": "z = 3"}.items():
            new[key] = pycrdt.Text(value) if key == "source" else value
    written = json.loads(saved(doc, parsed))
    assert written["nbformat_minor"] == 4
    assert [c["id"] for c in written["cells"]] == ["intro", "first-code", "added-by-lab"]

    without = json.loads(text)
    for cell in without["cells"]:
        del cell["id"]
    parsed = FORMAT.parse(json.dumps(without).encode())
    written = json.loads(saved(loaded(parsed), parsed))
    assert all("id" not in cell for cell in written["cells"])


def test_an_edit_never_adds_a_deviation() -> None:
    """A file with deviations is written with those, and refused with any new one: the
    same rule that keeps a valid notebook from being turned into an invalid one."""
    parsed = FORMAT.parse(TOLERATED["cell without source"].encode())
    doc = loaded(parsed)
    cells = doc.get("cells", type=pycrdt.Array)
    with doc.transaction():
        cells[0]["cell_type"] = "bogus"
    with pytest.raises(FormatError, match="Invalid notebook"):
        saved(doc, parsed)

    valid = FORMAT.parse(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell("v = 1")])).encode())
    assert valid.shape.plain
    doc = loaded(valid)
    with doc.transaction():
        doc.get("meta", type=pycrdt.Map)["metadata"]["kernelspec"] = {"display_name": "no name"}
    with pytest.raises(FormatError, match="kernelspec"):
        saved(doc, valid)


def test_a_missing_field_is_not_made_up_but_a_typed_one_is_kept() -> None:
    """A code cell that had no outputs is written without them until it gets some."""
    parsed = FORMAT.parse(TOLERATED["code cell without outputs"].encode())
    doc = loaded(parsed)
    assert "outputs" not in json.loads(saved(doc, parsed))["cells"][0]
    with doc.transaction():
        cells = doc.get("cells", type=pycrdt.Array)
        cells[0]["outputs"].append(pycrdt.Map({"output_type": "stream", "name": "stdout",
                                              "text": pycrdt.Text("1\n")}))
        cells[0]["execution_count"] = 1
    cell = json.loads(saved(doc, parsed))["cells"][0]
    assert cell["outputs"] == [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}]
    assert cell["execution_count"] == 1
