"""What JupyterLab users do by habit, in real Chromium: saving with Ctrl+S, deleting an open
notebook, opening any notebook Jupyter opens, reading when it was saved, sharing it, seeing
who is there.

One ``jupyter lab`` for the module (under ``/jp/``, with jupyter_ydjango, the room's
autosave after half a second of quiet), one browser, a fresh browser context per user.
The JupyterLab application is exposed in the pages (``window.jupyterapp``) so that the tests
can watch the document context's save states instead of guessing from the screen.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import (
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    edit_cell_end,
    no_dialog,
    open_notebook,
    signed_in_pages,
    unavailable,
    wait_for_cells,
    wait_for_status,
    wait_until,
)
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

#: Seconds of quiet before the room saves by itself.
SAVE_DELAY = 0.5


#: The metadata JupyterLab gives a notebook whose user chose "No Kernel": a notebook that has
#: it already is not changed by opening it (the tests start no kernels).
NO_KERNEL = {"kernelspec": {"display_name": "", "name": ""}, "language_info": {"name": ""}}


def write_notebook(path: Path, sources: list[str]) -> None:
    """A notebook without a kernel (JupyterLab asks which kernel; the tests say none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [new_code_cell(source, id=f"cell-{i}") for i, source in enumerate(sources)]
    nbformat.write(new_notebook(cells=cells, metadata=NO_KERNEL), path)


def sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    server = LabServer(tmp, root, base_url="/jp/", args=(
        f"--YDjango.save_delay={SAVE_DELAY}",
        "--LabApp.expose_app_in_browser=True",
    ))
    yield server
    server.stop()


@pytest.fixture
def sign_in(lab: LabServer, chromium: Any,
            request: pytest.FixtureRequest) -> Iterator[Callable[[str], Any]]:
    """``sign_in(token)``: a new signed-in user's page (see :func:`browser.signed_in_pages`)."""
    failed_before = request.session.testsfailed
    with signed_in_pages(lab, chromium, request.node.name,
                         lambda: request.session.testsfailed > failed_before) as new_page:
        yield new_page


#: Record the save states ("started", "completed", "failed") of the current document.
RECORD_SAVES_JS = """() => {
    const context = window.jupyterapp.shell.currentWidget.context;
    window.__saves = [];
    context.saveState.connect((_, state) => window.__saves.push(state));
}"""


def press_save(page: Any) -> str:
    """Press Ctrl+S in ``page`` and wait for the document's save to end; "completed" or
    "failed"."""
    before = len(page.evaluate("window.__saves"))
    page.keyboard.press("Control+s")

    def ended() -> str | None:
        states = page.evaluate("window.__saves")[before:]
        return next((s for s in states if s in ("completed", "failed")), None)

    return wait_until(ended, message=lambda: f"save states {page.evaluate('window.__saves')}")


# --- saving ---------------------------------------------------------------------------------


def test_ctrl_s_shows_no_dialog(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    """Ctrl+S on an unedited notebook, right after an edit, and after the room's autosave
    wrote the edit: each save completes, without a dialog, and the file holds the edit."""
    path = lab.root / "habit.ipynb"
    write_notebook(path, ["x = 1"])
    alice = sign_in(WRITER_TOKEN)
    open_notebook(alice, lab.notebook_url("habit.ipynb"))
    wait_for_status(alice, state="synced")
    alice.evaluate(RECORD_SAVES_JS)
    before = path.read_bytes()

    assert press_save(alice) == "completed"  # unedited
    no_dialog(alice)
    assert path.read_bytes() == before

    edit_cell_end(alice, 0)
    alice.keyboard.type(" + 1")
    assert press_save(alice) == "completed"  # just edited
    no_dialog(alice)
    assert sources(path) == ["x = 1 + 1"]

    alice.keyboard.type(" + 2")
    wait_until(lambda: sources(path) == ["x = 1 + 1 + 2"],
               message=lambda: f"the autosave: the file holds {sources(path)!r}")
    assert press_save(alice) == "completed"  # after the autosave
    no_dialog(alice)
    assert sources(path) == ["x = 1 + 1 + 2"]
    assert json.loads(path.read_text())["cells"][0]["id"] == "cell-0"


def test_ctrl_s_of_a_second_user(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    """Bob saves what Alice typed (the file already holds it: the autosave wrote it)."""
    path = lab.root / "second.ipynb"
    write_notebook(path, ["y = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab.notebook_url("second.ipynb"))
    open_notebook(bob, lab.notebook_url("second.ipynb"))
    wait_for_status(bob, state="synced", people="2")
    bob.evaluate(RECORD_SAVES_JS)
    edit_cell_end(alice, 0)
    alice.keyboard.type("0")
    wait_for_cells(bob, ["y = 10"])
    wait_until(lambda: sources(path) == ["y = 10"], message="the autosave")
    assert press_save(bob) == "completed"
    no_dialog(bob)
    no_dialog(alice)


# --- deleting an open notebook ----------------------------------------------------------------


def delete_in_file_browser(page: Any, name: str) -> None:
    """Delete the file ``name`` (in the root) from JupyterLab's file browser, as a user does:
    its context menu's Delete, then the confirmation."""
    if not page.locator("#filebrowser").is_visible():
        page.locator(".jp-SideBar .lm-TabBar-tab[data-id='filebrowser']").click()
    item = page.locator("#filebrowser .jp-DirListing-item", has=page.locator(
        ".jp-DirListing-itemText", has_text=name))
    item.click(button="right")
    page.locator(".lm-Menu-item[data-command='filebrowser:delete']").click()
    dialog = page.locator(".jp-Dialog")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
    dialog.wait_for(state="detached")


@pytest.mark.parametrize("how", ["file browser", "on disk"])
def test_a_deleted_notebook_stays_deleted(lab: LabServer, sign_in: Callable[[str], Any],
                                          how: str) -> None:
    name = f"doomed-{how.replace(' ', '-')}.ipynb"
    path = lab.root / name
    write_notebook(path, ["z = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab.notebook_url(name))
    open_notebook(bob, lab.notebook_url(name))
    for page in (alice, bob):
        wait_for_status(page, state="synced", people="2")

    if how == "file browser":
        # JupyterLab closes the deleter's own tab of the file; the others are told.
        delete_in_file_browser(alice, name)
        alice.locator(".jp-NotebookPanel").wait_for(state="detached")
        told = [bob]
    else:
        path.unlink()
        told = [alice, bob]
    for page in told:
        wait_for_status(page, state="deleted")
        assert page.locator("#ydjango-status").inner_text().startswith("deleted")
    assert not path.exists()

    # Typing goes on between the people still there; the file is not made again.
    edit_cell_end(bob, 0)
    bob.keyboard.type(" + 1")
    wait_for_cells(told[0], ["z = 1 + 1"])
    time.sleep(4 * SAVE_DELAY + 2)  # the room would have saved by now
    assert not path.exists()
    assert not [p for p in lab.root.iterdir() if p.name.startswith(name)]


# --- when it was last written --------------------------------------------------------------------


def test_last_written_is_what_the_server_knows(lab: LabServer,
                                               sign_in: Callable[[str], Any]) -> None:
    """No time for a file nobody saved since it was opened; "saved" once the room wrote it;
    "changed on disk" once another program did."""
    path = lab.root / "when.ipynb"
    write_notebook(path, ["w = 1"])
    alice = sign_in(WRITER_TOKEN)
    open_notebook(alice, lab.notebook_url("when.ipynb"))
    shown = wait_for_status(alice, state="synced", people="1")
    # the status has polled the room at least once by now (it knows the room's state)
    assert shown["writtenAt"] == "" and shown["writtenBy"] == ""
    text = alice.locator("#ydjango-status").inner_text()
    assert text == "synced · 1 person", text

    edit_cell_end(alice, 0)
    alice.keyboard.type("0")
    wait_until(lambda: sources(path) == ["w = 10"], message="the autosave")
    shown = wait_for_status(alice, writtenBy="room")
    assert shown["writtenAt"] and shown["lastSaved"]
    wait_until(lambda: "saved" in alice.locator("#ydjango-status").inner_text())

    write_notebook(path, ["w = 2"])  # another program
    wait_for_cells(alice, ["w = 2"])
    shown = wait_for_status(alice, writtenBy="outside")
    wait_until(lambda: "changed on disk" in alice.locator("#ydjango-status").inner_text(),
               message=lambda: alice.locator("#ydjango-status").inner_text())
    no_dialog(alice)
