"""nbformat <-> YDoc mapping (``jupyter_ydjango.formats.notebook``), checked against independent
readers.

Every notebook goes file -> :func:`read_notebook` -> :func:`load_into` (a pycrdt doc), then back:

* :func:`notebook_from_doc` must give what nbformat reads from the file (after the same
  upgrade), and :func:`write_notebook` what Jupyter would write;
* JupyterLab's own ``@jupyter/ydoc`` on ``yjs`` (in node,
  ``tests/support/js/ydoc_notebook.mjs``), an independent implementation, must read the same
  notebook from the doc's encoded state;
* ``jupyter_ydoc.YNotebook`` on a copy of the doc must read it too, and find the schema's
  types (YText sources, YMap metadata, ...); it runs on pycrdt, our own engine, so it is a
  second reader, not an independent one;
* in the other direction, a doc written by ``@jupyter/ydoc`` must read as the notebook it built.

The fixture notebooks live outside the project (``NOTEBOOK_FIXTURES_DIR``, by default
``/work/shared/fixtures/notebooks``); their tests are skipped when that folder is absent.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pycrdt
import pytest
from jupyter_ydoc import YNotebook
from nbformat import NotebookNode
from nbformat.v4 import (
    new_code_cell,
    new_notebook,
)
from notebooks import (
    FIXTURES,
    INVALID_FIXTURE,
    KERNELSPEC,
    generated_notebook,
    plain,
    without_empty_attachments,
)
from yjs_client import JS_DIR

from jupyter_ydjango.formats import notebook as notebook_module
from jupyter_ydjango.formats.builtin import NotebookFormat
from jupyter_ydjango.formats.notebook import (
    NotebookError,
    load_into,
    notebook_from_doc,
    read_notebook,
    validate_notebook,
    write_notebook,
)


def _fixture_params(*, invalid: bool) -> list[Any]:
    if not FIXTURES.is_dir():
        reason = f"notebook fixture folder {FIXTURES} is absent (set NOTEBOOK_FIXTURES_DIR)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-fixtures")]
    paths = sorted(FIXTURES.glob("*.ipynb"))
    chosen = [p for p in paths if (p.name == INVALID_FIXTURE) == invalid]
    return [pytest.param(p, id=p.name) for p in chosen]


# --- helpers ----------------------------------------------------------------------------------


def jupyter_write(nb: NotebookNode) -> str:
    """What Jupyter's file manager writes (``nbformat.write(nb, f, version=NO_CONVERT)``)."""
    text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def pycrdt_doc(ydoc: pycrdt.Doc) -> pycrdt.Doc:
    """A copy of a doc, through its encoded state (as a client would get it)."""
    doc = pycrdt.Doc()
    doc.apply_update(ydoc.get_update())
    return doc


#: The cell types JupyterLab's ``@jupyter/ydoc`` knows; a document with another one (from a
#: future nbformat) makes it throw "Found unknown cell type".
JS_CELL_TYPES = frozenset({"code", "markdown", "raw"})


def node_read(node_modules: Path, doc: pycrdt.Doc) -> Any:
    """The notebook JupyterLab's ``@jupyter/ydoc`` (on ``yjs``) reads from ``doc``'s state."""
    update = base64.b64encode(doc.get_update()).decode()
    return json.loads(run_ydoc_script(node_modules, "read", stdin=update))


def assert_schema(doc: pycrdt.Doc) -> None:
    """The shared types are the ones the frontend expects (checked with pycrdt)."""
    meta = doc.get("meta", type=pycrdt.Map)
    assert isinstance(meta["metadata"], pycrdt.Map)
    assert isinstance(meta["nbformat"], (int, float))
    assert isinstance(meta["nbformat_minor"], (int, float))
    cells = doc.get("cells", type=pycrdt.Array)
    ids = []
    for cell in cells:
        assert isinstance(cell, pycrdt.Map)
        ids.append(cell["id"])
        assert isinstance(cell["id"], str) and cell["id"]
        assert isinstance(cell["metadata"], pycrdt.Map)
        if "source" in cell:
            assert isinstance(cell["source"], pycrdt.Text)
        if cell["cell_type"] == "code":
            # the frontend only writes execution_state when a cell runs; we write "idle"
            assert cell.get("execution_state", "idle") in ("idle", "running")
            assert "execution_count" in cell
            outputs = cell["outputs"]
            assert isinstance(outputs, pycrdt.Array)
            for output in outputs:
                assert isinstance(output, pycrdt.Map)
                if output["output_type"] == "stream":
                    assert isinstance(output["text"], pycrdt.Text)
        else:
            assert "execution_state" not in cell and "outputs" not in cell
            if "attachments" in cell:
                assert cell["attachments"], "empty attachments are omitted"
                assert not isinstance(cell["attachments"], (pycrdt.Map, pycrdt.Array))
    assert len(set(ids)) == len(ids), "cell ids are unique in the doc"


def check_mapping(nb: NotebookNode, node_modules: Path) -> pycrdt.Doc:
    """The checks every notebook goes through; returns the loaded doc."""
    doc = pycrdt.Doc(client_id=1)
    load_into(doc, copy.deepcopy(nb))
    expected = without_empty_attachments(nb)

    # 1. our reader gives back what nbformat read (in the file's shape: a field the file
    # lacked, such as the source of a cell of a future type, is not made up), and Jupyter
    # would write the same bytes
    back = NotebookFormat().read(doc, NotebookFormat().shape(nb))
    assert isinstance(back, NotebookNode)
    assert back == expected
    assert write_notebook(back) == jupyter_write(expected)

    # 2. JupyterLab's @jupyter/ydoc on yjs, an independent implementation, reads the same
    # notebook (ids stripped for nbformat 4.0-4.4, as nbformat writes it)
    if {cell.cell_type for cell in nb.cells} <= JS_CELL_TYPES:
        assert node_read(node_modules, doc) == plain(expected)
    else:
        # a cell type from a future nbformat: the doc holds it and saves it back (1. above),
        # but @jupyter/ydoc refuses any document with a cell type it does not know
        update = base64.b64encode(doc.get_update()).decode()
        run_ydoc_script(node_modules, "read", stdin=update, fails_with="Found unknown cell type")

    # 3. jupyter_ydoc (on pycrdt, like us: a second reader) reads it too
    other = pycrdt_doc(doc)
    assert_schema(other)
    got = YNotebook(other).get()
    # the document gives every cell a source, for the frontend's editor (1. shows the file
    # gets none back where it had none)
    in_doc = [{"source": "", **cell} for cell in plain(expected["cells"])]
    assert plain(got["cells"]) == in_doc
    assert plain(got["metadata"]) == plain(expected["metadata"])
    assert (got["nbformat"], got["nbformat_minor"]) == (
        expected["nbformat"],
        expected["nbformat_minor"],
    )
    # (jupyter_ydoc knows only these four top-level fields; a notebook from a future nbformat
    # may have more, which we keep in meta)
    assert set(got) == {"cells", "metadata", "nbformat", "nbformat_minor"}
    return doc


# --- fixtures from nbformat and real notebooks ------------------------------------------------


@pytest.mark.parametrize("path", _fixture_params(invalid=True))
def test_invalid_fixture_is_read_as_jupyter_reads_it(path: Path) -> None:
    """Jupyter opens it (logging its validation errors): so does read_notebook; only with
    ``strict`` is it refused. (Writing it back: ``test_opening.py``.)"""
    text = path.read_text(encoding="utf-8")
    assert plain(read_notebook(text)) == plain(nbformat.reads(text, as_version=4))
    with pytest.raises(NotebookError, match="source"):
        read_notebook(text, strict=True)


@pytest.mark.node
@pytest.mark.parametrize("path", _fixture_params(invalid=False))
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")  # nbformat.reads
def test_fixture_notebook(path: Path, node_modules: Path) -> None:
    text = path.read_text(encoding="utf-8")
    nb = read_notebook(text)
    assert read_notebook(path.read_bytes()) == nb, "reading is deterministic"

    # the same upgrade as Jupyter's file manager (nbformat.reads(..., as_version=4)), except
    # that cells without an id in a 4.5+ file get derived ids instead of random ones
    jupyter = nbformat.reads(text, as_version=4)
    for ours, theirs, raw in zip(
        nb.cells, jupyter.cells, json.loads(text)["cells"], strict=True
    ):
        if "id" not in raw and "id" in theirs:
            theirs["id"] = ours["id"]
    assert nb == jupyter

    check_mapping(nb, node_modules)

    # saved as Jupyter would save it; a file Jupyter wrote comes back byte for byte (unless it
    # has empty attachments, which the doc omits, as jupyter_ydoc's does)
    doc = pycrdt.Doc()
    parsed = NotebookFormat().parse(text.encode("utf-8"))
    load_into(doc, parsed.nb)
    saved = NotebookFormat().render_dump(NotebookFormat().dump(doc), parsed.shape).decode()
    assert saved == jupyter_write(without_empty_attachments(nb))
    if jupyter_write(nb) == text:
        assert saved == text or without_empty_attachments(nb) != nb


# --- generated notebooks ----------------------------------------------------------------------

#: a 1x1 transparent PNG, base64
@pytest.mark.node
@pytest.mark.parametrize("n_cells", [100, 1_000, 5_000])
def test_generated_notebook(n_cells: int, node_modules: Path) -> None:
    nb = generated_notebook(n_cells)
    text = write_notebook(nb)
    assert text == jupyter_write(nb)
    assert read_notebook(text) == nb
    check_mapping(nb, node_modules)


def test_jupyter_written_notebook_round_trips_byte_for_byte() -> None:
    nb = generated_notebook(60)
    text = write_notebook(nb)
    assert text == jupyter_write(nb)  # written exactly as Jupyter writes it
    doc = pycrdt.Doc()
    load_into(doc, read_notebook(text))
    again = write_notebook(notebook_from_doc(doc))
    assert again == text
    # and through a second doc built from the first one's state
    copy_doc = pycrdt.Doc()
    copy_doc.apply_update(doc.get_update())
    assert write_notebook(notebook_from_doc(copy_doc)) == text


# --- details ----------------------------------------------------------------------------------


def test_load_is_deterministic_and_one_transaction() -> None:
    """Two loads with one client id create the same items with the same Yjs ids.

    That is what lets a room be rebuilt from its file while clients still hold the old items.
    (The updates are not byte-identical: pycrdt writes a JSON object's keys in hash-map order.
    So this checks what matters: edits made on one copy land in the same places on the other.)
    """
    nb = read_notebook(write_notebook(generated_notebook(30)))
    nb.nbformat_minor = 4  # no cell ids in the file: the doc still needs them
    for cell in nb.cells:
        del cell["id"]
    docs = []
    for _ in range(2):
        doc = pycrdt.Doc(client_id=7)
        seen: list[bytes] = []
        doc.observe(lambda event, seen=seen: seen.append(event.update))
        load_into(doc, nb, path="dir/nb.ipynb", content_hash="abc")
        # one transaction (getting the root types makes empty ones)
        assert len([update for update in seen if update != b"\x00\x00"]) == 1
        docs.append(doc)
    first, second = docs
    assert first.get_state() == second.get_state()
    state = first.get("state", type=pycrdt.Map)
    assert (state["dirty"], state["path"], state["hash"]) == (False, "dir/nb.ipynb", "abc")
    ids = [cell["id"] for cell in first.get("cells", type=pycrdt.Array)]
    assert all(ids) and len(set(ids)) == len(ids)
    assert ids == [cell["id"] for cell in second.get("cells", type=pycrdt.Array)]
    back = notebook_from_doc(first)
    assert back == nb and all("id" not in cell for cell in back.cells)

    # a client that synced with the first copy edits; its update is applied to both copies
    editor = pycrdt.Doc(client_id=99)
    editor.apply_update(first.get_update())
    cells = editor.get("cells", type=pycrdt.Array)
    with editor.transaction():
        cells[4]["source"].insert(2, "EDIT")
        cells[7]["metadata"]["tags"] = ["edited"]
        stream = cells[1]["outputs"][0]["text"]
        stream += "more\n"
        cells[2]["execution_count"] = 42
        del cells[5]
        editor.get("meta", type=pycrdt.Map)["metadata"]["title"] = "edited"
    update = editor.get_update(first.get_state())
    for doc in docs:
        doc.apply_update(update)
    edited = notebook_from_doc(editor)
    assert edited.cells[4].source[2:6] == "EDIT" and edited.metadata.title == "edited"
    assert notebook_from_doc(first) == edited
    assert notebook_from_doc(second) == edited


def _public_api_prepend(txn: Any, ycells: pycrdt.Array, entries: list[dict[str, Any]]) -> None:
    for cell in reversed(entries):
        ycells.insert(0, notebook_module._prelim_map(cell))


def _notebooks_to_build() -> list[Any]:
    """Generated notebooks (every cell and output kind), and the valid fixtures if present."""
    params = [pytest.param(write_notebook(generated_notebook(n)), id=f"generated-{n}")
              for n in (1, 40, 450)]
    if FIXTURES.is_dir():
        params += [pytest.param(p.read_text(encoding="utf-8"), id=p.name)
                   for p in sorted(FIXTURES.glob("*.ipynb")) if p.name != INVALID_FIXTURE]
    return params


@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")
@pytest.mark.parametrize("text", _notebooks_to_build())
def test_load_through_native_types_makes_the_items_of_the_public_api(
        text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cells are made on pycrdt's native types directly, for speed: the very items (same ids,
    same places, same content) that pycrdt's public API makes, or rebuilding a room from its
    file would duplicate cells for clients holding items of the other build."""
    nb = read_notebook(text)
    native = pycrdt.Doc(client_id=0)
    load_into(native, nb, path="nb.ipynb", content_hash="h")
    monkeypatch.setattr(notebook_module, "_prepend_cells", _public_api_prepend)
    public = pycrdt.Doc(client_id=0)
    load_into(public, nb, path="nb.ipynb", content_hash="h")

    assert native.get_state() == public.get_state()
    cells = native.get("cells", type=pycrdt.Array)
    assert cells.to_py() == public.get("cells", type=pycrdt.Array).to_py()
    before = len(cells)
    native.apply_update(public.get_update())  # the same ids: nothing is added
    assert len(cells) == before
    assert notebook_from_doc(native) == notebook_from_doc(public)
    if before:  # an edit made on one build lands in the same place on the other
        editor = pycrdt.Doc(client_id=5)
        editor.apply_update(public.get_update())
        with editor.transaction():
            editor.get("cells", type=pycrdt.Array)[before - 1]["source"].insert(0, "EDIT ")
        update = editor.get_update(public.get_state())
        public.apply_update(update)
        native.apply_update(update)
        assert notebook_from_doc(native) == notebook_from_doc(public) == notebook_from_doc(editor)


def test_load_refuses_a_doc_that_has_content() -> None:
    nb = generated_notebook(3)
    doc = pycrdt.Doc()
    load_into(doc, nb)
    with pytest.raises(NotebookError, match="already has 3 cells"):
        load_into(doc, nb)
    other = pycrdt.Doc()
    other.get("meta", type=pycrdt.Map)["nbformat"] = 4
    with pytest.raises(NotebookError, match="already has notebook metadata"):
        load_into(other, nb)


def test_numbers_and_big_integers() -> None:
    nb = generated_notebook(2)
    nb.metadata["numbers"] = {"int": 3, "float": 2.5, "big": 2**60, "neg": -7, "huge": 1e300}
    doc = pycrdt.Doc()
    load_into(doc, nb)
    stored = doc.get("meta", type=pycrdt.Map)["metadata"]["numbers"]
    assert isinstance(stored["big"], float), "no BigInt in the doc: the frontend cannot JSON it"
    back = notebook_from_doc(doc)
    numbers = back.metadata["numbers"]
    assert numbers == {"int": 3, "float": 2.5, "big": float(2**60), "neg": -7, "huge": 1e300}
    assert type(numbers["int"]) is int and type(numbers["huge"]) is float
    assert type(back.cells[1].execution_count) is int
    assert (type(back.nbformat), type(back.nbformat_minor)) == (int, int)


@pytest.mark.parametrize("oddity", ["NaN", "Infinity", str(2**70), '"\\ud800 lone"', "1e400"])
def test_json_beyond_orjson_is_read_as_jupyter_reads_it(oddity: str) -> None:
    """orjson refuses some JSON that Python's json, and so Jupyter, reads: such files are
    read all the same, to the same notebook. (An integer wider than 64 bits is read as the
    nearest float, which is what the document holds of it in any case.)"""
    text = write_notebook(generated_notebook(3)).replace(
        '"metadata": {', f'"metadata": {{\n  "odd": {oddity},', 1)
    nb = read_notebook(text.encode())
    if oddity.isdigit():
        text = text.replace(oddity, repr(float(int(oddity))))
    jupyter = nbformat.reads(text, as_version=4)
    assert json.dumps(nb, sort_keys=True) == json.dumps(jupyter, sort_keys=True)
    assert isinstance(nb.metadata, NotebookNode) and isinstance(nb.cells[0], NotebookNode)


def test_read_notebook_gives_nodes_where_nbformat_code_uses_attributes() -> None:
    nb = read_notebook(write_notebook(generated_notebook(12)).encode())
    assert isinstance(nb, NotebookNode) and isinstance(nb.metadata, NotebookNode)
    for cell in nb.cells:
        assert isinstance(cell, NotebookNode) and isinstance(cell.metadata, NotebookNode)
        assert all(isinstance(output, NotebookNode) for output in cell.get("outputs", []))
    assert nb == nbformat.reads(write_notebook(generated_notebook(12)), as_version=4)


def test_duplicate_and_missing_ids_in_a_doc_keep_every_cell() -> None:
    nb = generated_notebook(3)
    doc = pycrdt.Doc()
    load_into(doc, nb)
    cells = doc.get("cells", type=pycrdt.Array)
    with doc.transaction():
        cells[2]["id"] = cells[0]["id"]
        del cells[1]["id"]
    back = notebook_from_doc(doc)
    assert [c.source for c in back.cells] == [c.source for c in nb.cells]
    ids = [c.id for c in back.cells]
    assert ids[0] == nb.cells[0].id and len(set(ids)) == 3
    assert notebook_from_doc(doc) == back, "derived ids are stable"
    write_notebook(back)


def test_read_notebook_errors() -> None:
    with pytest.raises(NotebookError, match="not valid JSON"):
        read_notebook("{")
    with pytest.raises(NotebookError, match="not UTF-8"):
        read_notebook(b"\xff\xfe")
    with pytest.raises(NotebookError, match="must be an object"):
        read_notebook("[]")
    with pytest.raises(NotebookError, match="Unsupported notebook format"):
        read_notebook('{"nbformat": 9, "nbformat_minor": 0, "cells": [], "metadata": {}}')
    lacking = ('{"nbformat": 4, "nbformat_minor": 5, "metadata": {},'
               ' "cells": [{"cell_type": "code", "source": "", "metadata": {}, "id": "a"}]}')
    assert read_notebook(lacking).cells[0].id == "a", "opened, as Jupyter opens it"
    with pytest.raises(NotebookError, match="cells/0"):
        read_notebook(lacking, strict=True)


@pytest.mark.node
@pytest.mark.filterwarnings("ignore::nbformat.validator.MissingIDFieldWarning")  # nbformat.reads
def test_read_notebook_upgrades_like_jupyter(node_modules: Path) -> None:
    v3 = nbformat.v3.new_notebook(
        worksheets=[nbformat.v3.new_worksheet(cells=[nbformat.v3.new_code_cell(input="1 + 1")])]
    )
    text = nbformat.v3.writes_json(v3)
    nb = read_notebook(text)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert nb == read_notebook(text), "derived ids, not random ones"
    expected = nbformat.reads(text, as_version=4)
    expected.cells[0].id = nb.cells[0].id
    assert nb == expected
    check_mapping(nb, node_modules)
    # a duplicated id is repaired (as nbformat does), deterministically
    twice = new_notebook(cells=[new_code_cell("a", id="same"), new_code_cell("b", id="other")])
    twice.cells[1].id = "same"  # (new_notebook would have repaired it already)
    repaired = read_notebook(nbformat.v4.writes_json(twice, split_lines=False))
    assert repaired.cells[0].id == "same" and repaired.cells[1].id != "same"


def test_write_refuses_invalid_notebooks() -> None:
    nb = generated_notebook(2)
    nb.cells[0].pop("source")
    with pytest.raises(NotebookError, match=r"cells/0.*source"):
        write_notebook(nb)
    nb = generated_notebook(2)
    nb.cells[1].id = nb.cells[0].id
    with pytest.raises(NotebookError, match="duplicate cell id"):
        validate_notebook(nb)
    nb = generated_notebook(2)
    del nb.cells[1]["id"]
    with pytest.raises(NotebookError, match="cells/1"):
        write_notebook(nb)
    assert "id" not in nb.cells[1], "validation repairs nothing"


def test_doc_only_fields_are_not_written() -> None:
    nb = generated_notebook(4)
    doc = pycrdt.Doc()
    load_into(doc, nb)
    code = doc.get("cells", type=pycrdt.Array)[1]
    with doc.transaction():
        code["execution_state"] = "running"
        code["some_extension_key"] = 1
        code["metadata"]["trusted"] = True  # transient: nbformat never writes it
    back = notebook_from_doc(doc)
    assert "execution_state" not in back.cells[1] and "some_extension_key" not in back.cells[1]
    assert write_notebook(back) == write_notebook(nb)


@pytest.mark.node
def test_empty_notebook(node_modules: Path) -> None:
    nb = new_notebook()
    check_mapping(nb, node_modules)


def test_never_moves_array_items() -> None:
    source = Path(notebook_module.__file__).read_text(encoding="utf-8")
    assert "move_to(" not in source and "move_range_to(" not in source


# --- documents written by JupyterLab's @jupyter/ydoc ------------------------------------------


def expected_js_notebook() -> dict[str, Any]:
    """The notebook ``tests/support/js/ydoc_notebook.mjs`` builds."""
    png = (
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
        "rkJggg=="
    )
    return {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": KERNELSPEC,
            "language_info": {
                "codemirror_mode": {"name": "ipython", "version": 3},
                "name": "python",
                "version": "3.12.1",
            },
            "widgets": {
                "application/vnd.jupyter.widget-state+json": {
                    "state": {},
                    "version_major": 2,
                    "version_minor": 0,
                }
            },
        },
        "cells": [
            {
                "id": "md-1",
                "cell_type": "markdown",
                "source": "# Title 😀\n\n漢字 and e\u0301 ![pic](attachment:pic.png)",
                "metadata": {},
                "attachments": {"pic.png": {"image/png": png}},
            },
            {
                "id": "code-1",
                "cell_type": "code",
                "source": 'print("hi")\nprint(42)',
                "metadata": {"tags": ["setup"], "scrolled": True},
                "execution_count": 3,
                "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": "hi\n42\n"},
                    {
                        "output_type": "execute_result",
                        "execution_count": 3,
                        "data": {"text/plain": "42", "text/html": "<b>42</b>"},
                        "metadata": {"scale": 0.5},
                    },
                    {
                        "output_type": "display_data",
                        "data": {
                            "image/png": png,
                            "text/plain": "<Figure size 640x480 with 1 Axes>",
                        },
                        "metadata": {"image/png": {"width": 640, "height": 480}},
                    },
                ],
            },
            {
                "id": "raw-1",
                "cell_type": "raw",
                "source": "raw text, edited",
                "metadata": {"format": "text/plain"},
            },
            {
                "id": "code-2",
                "cell_type": "code",
                "source": "1 / 0",
                "metadata": {},
                "execution_count": 4,
                "outputs": [
                    {
                        "output_type": "error",
                        "ename": "ZeroDivisionError",
                        "evalue": "division by zero",
                        "traceback": ["\x1b[0;31mZeroDivisionError\x1b[0m: division by zero"],
                    }
                ],
            },
        ],
    }


def run_ydoc_script(node_modules: Path, *args: str, stdin: str | None = None,
                    fails_with: str | None = None) -> str:
    """Run ``tests/support/js/ydoc_notebook.mjs`` (JupyterLab's @jupyter/ydoc in node); its stdout.

    With ``fails_with``, the script must fail with that text in its stderr instead.
    """
    if not (node_modules / "@jupyter" / "ydoc" / "package.json").is_file():
        pytest.fail(
            f"@jupyter/ydoc is missing from {node_modules}: run `npm ci` in {JS_DIR}",
            pytrace=False,
        )
    proc = subprocess.run(
        ["node", str(JS_DIR / "ydoc_notebook.mjs"), *args],
        cwd=JS_DIR,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if fails_with is not None:
        assert proc.returncode != 0 and fails_with in proc.stderr, (proc.stdout, proc.stderr)
        return proc.stdout
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.node
def test_doc_written_by_jupyterlab_ydoc(node_modules: Path) -> None:
    update_b64, js_json = run_ydoc_script(node_modules).splitlines()

    doc = pycrdt.Doc()
    doc.apply_update(base64.b64decode(update_b64))
    back = notebook_from_doc(doc)
    expected = expected_js_notebook()
    assert plain(back) == expected
    assert plain(back) == json.loads(js_json), "reads as @jupyter/ydoc itself reads it"
    assert type(back.cells[1].execution_count) is int
    assert type(back.cells[1].outputs[1].execution_count) is int
    # what gets saved is what nbformat would save for that notebook
    assert write_notebook(back) == jupyter_write(nbformat.from_dict(expected))
    # and the stock frontend's doc satisfies the schema we write
    assert_schema(pycrdt_doc(doc))


def test_generated_notebook_is_deterministic() -> None:
    digest = hashlib.sha256(write_notebook(generated_notebook(50)).encode()).hexdigest()
    assert digest == hashlib.sha256(write_notebook(generated_notebook(50)).encode()).hexdigest()


@pytest.mark.node
@pytest.mark.parametrize("minor", [5, 4])
def test_jupyterlab_ydoc_reads_our_doc(node_modules: Path, minor: int) -> None:
    """The frontend's own model sees the notebook we loaded (ids stripped for 4.0-4.4)."""
    nb = generated_notebook(200)
    if minor < 5:
        nb.nbformat_minor = minor
        for cell in nb.cells:
            del cell["id"]
    doc = pycrdt.Doc()
    load_into(doc, nb)
    assert node_read(node_modules, doc) == plain(nb)
