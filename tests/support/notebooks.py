"""Test notebooks: the shared fixture folder and generated notebooks of any size."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbformat.v4 import (
    new_code_cell,
    new_markdown_cell,
    new_notebook,
    new_output,
    new_raw_cell,
)

from jupyter_ydjango.formats.notebook import validate_notebook

#: Real notebooks and nbformat's test notebooks; tests using them skip when it is absent.
FIXTURES = Path(os.environ.get("NOTEBOOK_FIXTURES_DIR", "/work/shared/fixtures/notebooks"))
#: The fixture that is not a valid notebook.
INVALID_FIXTURE = "nbformat-invalid.ipynb"

PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg=="
)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
UNICODE = [
    "emoji 😀🎉👩‍💻 and flags 🇫🇷",
    "CJK 漢字かなカナ한국어",
    "combining e\u0301 a\u0308 n\u0303 (not NFC)",
    "zero width\u200bjoiner\u200d and RTL שלום عربي",
]


def generated_notebook(n_cells: int) -> NotebookNode:
    """A deterministic nbformat 4.5 notebook of ``n_cells`` cells with every kind of content.

    Mostly code cells (stream, execute_result with text/html, error outputs) and markdown cells
    (some with attachments); every 10th cell is a code cell with a PNG ``display_data``; a few
    raw cells, empty cells and cells never run.
    """
    cells = []
    for i in range(n_cells):
        text = UNICODE[i % len(UNICODE)]
        with_png = i % 10 == 9
        if i % 3 == 0 and not with_png:
            cell = new_markdown_cell(
                id=f"md-{i}",
                source=f"## Section {i}\n\n{text}\n\n* item one\n* item two\n" if i % 12 else "",
            )
            if i % 9 == 0:
                cell.source += f"\n![plot](attachment:plot-{i}.png)"
                cell.attachments = {f"plot-{i}.png": {"image/png": PNG}}
            if i % 6 == 0:
                cell.metadata = {"tags": ["doc", text[:5]], "editable": False}
        elif i % 17 == 5 and not with_png:
            cell = new_raw_cell(
                id=f"raw-{i}", source=f"raw {text}", metadata={"format": "text/x-rst"}
            )
        else:
            run = i % 11 != 0 or with_png
            outputs = [
                new_output(
                    "stream", name="stdout", text="".join(f"line {k} {text}\n" for k in range(5))
                ),
                new_output(
                    "execute_result",
                    execution_count=i,
                    data={
                        "text/plain": f"<Result {i}>\n{text}",
                        "text/html": f"<p>{i}</p>\n<b>{text}</b>",
                    },
                    metadata={"isolated": i % 2 == 0},
                ),
            ]
            if i % 4 == 1:
                outputs.append(new_output("stream", name="stderr", text=f"warning {i}\n"))
            if with_png:
                outputs.append(
                    new_output(
                        "display_data",
                        data={"image/png": PNG, "text/plain": "<Figure size 640x480 with 1 Axes>"},
                        metadata={"image/png": {"width": 640, "height": 480}, "scale": 0.75},
                    )
                )
            if i % 7 == 2:
                outputs.append(
                    new_output(
                        "error",
                        ename="ValueError",
                        evalue=f"bad value {i} {text}",
                        traceback=[
                            "\x1b[0;31m---------------------------------------------------\x1b[0m",
                            f"\x1b[0;31mValueError\x1b[0m: bad value {i}",
                        ],
                    )
                )
            cell = new_code_cell(
                id=f"code-{i}",
                source=f"x = {i}\nprint('{text}')\n# {text}" if i % 13 else "",
                execution_count=i if run else None,
                outputs=outputs if run else [],
                metadata={
                    "tags": ["generated"],
                    "scrolled": i % 2 == 0,
                    "jupyter": {"source_hidden": False},
                },
            )
        cells.append(cell)
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": KERNELSPEC,
            "language_info": {
                "codemirror_mode": {"name": "ipython", "version": 3},
                "file_extension": ".py",
                "name": "python",
                "version": "3.12.1",
            },
            "title": UNICODE[0],
            "widgets": {
                "application/vnd.jupyter.widget-state+json": {
                    "state": {
                        "a1b2c3": {
                            "model_module": "@jupyter-widgets/controls",
                            "model_module_version": "2.0.0",
                            "model_name": "IntSliderModel",
                            "state": {
                                "value": 7,
                                "max": 100,
                                "min": 0,
                                "step": 1,
                                "description": "n 😀",
                            },
                        }
                    },
                    "version_major": 2,
                    "version_minor": 0,
                }
            },
        },
    )
    validate_notebook(nb)
    return nb


def without_empty_attachments(nb: NotebookNode) -> NotebookNode:
    """``nb`` as the doc holds it: markdown/raw cells' empty ``attachments`` are omitted.

    (The schema omits them, as jupyter_ydoc does; so a file with ``"attachments": {}`` loses
    that line when it is saved from a room, as it does with jupyter-collaboration.)
    """
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type in ("markdown", "raw") and cell.get("attachments") == {}:
            del cell["attachments"]
    return nb


def plain(value: Any) -> Any:
    """Plain JSON data (dicts, lists), for comparisons independent of container classes."""
    return json.loads(json.dumps(value))


# --- notebooks Jupyter opens although they do not follow their schema ---------------------------


def _edge(nbformat_minor: int, cells: list[dict[str, Any]], **top: Any) -> str:
    nb: dict[str, Any] = {"cells": cells, "metadata": {"kernelspec": KERNELSPEC},
                          "nbformat": 4, "nbformat_minor": nbformat_minor}
    nb.update(top)
    return json.dumps({k: v for k, v in nb.items() if v is not None}, indent=1) + "\n"


def _code(source: str, **extra: Any) -> dict[str, Any]:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": source, **extra}


def _markdown(source: str, **extra: Any) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source, **extra}


#: Notebooks that Jupyter's contents manager opens although they deviate from their nbformat
#: schema (it logs a validation error), as file content: name -> text.
TOLERATED: dict[str, str] = {
    # nbformat 4.4 with cell ids (VS Code, Jupytext and PDSH's notebooks write them)
    "4.4 with cell ids": _edge(4, [_markdown("# Title", id="intro"),
                                   _code("x = 1", id="first-code")]),
    # a cell without source, a code cell without outputs and execution count
    "cell without source": _edge(5, [_markdown("# kept", id="a"),
                                     {"cell_type": "markdown", "metadata": {}, "id": "b"}]),
    "code cell without outputs": _edge(5, [{"cell_type": "code", "metadata": {}, "id": "c",
                                            "source": "print(1)"}]),
    # a field the schema does not know, in an nbformat 4.4 cell
    "4.4 cell with an unknown field": _edge(4, [_code("y = 2", collapsed=True)]),
    # a cell of a type nbformat 4 does not know (nbformat 3's heading), without source
    "unknown cell type without source": _edge(5, [
        _markdown("before", id="e"),
        {"cell_type": "heading", "level": 2, "metadata": {}, "id": "f"},
    ]),
    "unknown output type": _edge(5, [_code("print(2)", id="g", execution_count=1, outputs=[
        {"output_type": "bad stream", "name": "stdout", "text": ["2\n"]}])]),
    # no "nbformat": nbformat (and so Jupyter) reads it as an nbformat 1 notebook
    "no nbformat": '{"cells": []}',
    "kernelspec without name": _edge(5, [_markdown("k", id="i")],
                                     metadata={"kernelspec": {"display_name": "Python"}}),
}

#: Files Jupyter refuses to open (nbformat cannot read them): name -> (bytes, what the
#: people who tried are told).
REFUSED: dict[str, tuple[bytes, str]] = {
    "empty file": (b"", "Not a notebook: the file is not valid JSON."),
    "not JSON": (b"print('hello')\n", "Not a notebook: the file is not valid JSON."),
    "JSON list": (b"[1, 2]", "Not a notebook: no notebook in this JSON."),
    "no nbformat, no cells": (b'{"a": 1}', "Not a notebook: no nbformat version in it."),
    "cell without metadata": (_edge(5, [{"cell_type": "markdown", "id": "d", "source": "x"}])
                              .encode(), "Not a notebook: nbformat cannot read it."),
    "no notebook metadata": (_edge(5, [_markdown("m", id="h")], metadata=None).encode(),
                             "Not a notebook: nbformat cannot read it."),
    "nbformat 5": (b'{"nbformat": 5, "nbformat_minor": 0, "cells": [], "metadata": {}}',
                   "Unsupported notebook format: nbformat 5."),
    "not UTF-8": (b'{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {"\xff": 1}}',
                  "Not a notebook: the file is not UTF-8 text."),
    "cells of numbers": (b'{"nbformat": 4, "nbformat_minor": 5, "cells": [1], "metadata": {}}',
                         "Not a notebook: nbformat cannot read it."),
}
