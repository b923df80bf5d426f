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
from typing import Any

import pytest
from browser import (
    NO_KERNEL,
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    copied_link,
    edit_cell_end,
    file_sources,
    no_dialog,
    open_notebook,
    start_editing,
    unavailable,
    wait_for_cells,
    wait_for_status,
    wait_until,
    write_kernelless_notebook,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

#: Seconds of quiet before the room saves by itself.
SAVE_DELAY = 0.5




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
    write_kernelless_notebook(path, ["x = 1"])
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
    assert file_sources(path) == ["x = 1 + 1"]

    alice.keyboard.type(" + 2")
    wait_until(lambda: file_sources(path) == ["x = 1 + 1 + 2"],
               message=lambda: f"the autosave: the file holds {file_sources(path)!r}")
    assert press_save(alice) == "completed"  # after the autosave
    no_dialog(alice)
    assert file_sources(path) == ["x = 1 + 1 + 2"]
    assert json.loads(path.read_text())["cells"][0]["id"] == "cell-0"


def test_ctrl_s_of_a_second_user(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    """Bob saves what Alice typed (the file already holds it: the autosave wrote it)."""
    path = lab.root / "second.ipynb"
    write_kernelless_notebook(path, ["y = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab.notebook_url("second.ipynb"))
    open_notebook(bob, lab.notebook_url("second.ipynb"))
    wait_for_status(bob, state="synced", people="2")
    bob.evaluate(RECORD_SAVES_JS)
    edit_cell_end(alice, 0)
    alice.keyboard.type("0")
    wait_for_cells(bob, ["y = 10"])
    wait_until(lambda: file_sources(path) == ["y = 10"], message="the autosave")
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
    write_kernelless_notebook(path, ["z = 1"])
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
    write_kernelless_notebook(path, ["w = 1"])
    alice = sign_in(WRITER_TOKEN)
    open_notebook(alice, lab.notebook_url("when.ipynb"))
    shown = wait_for_status(alice, state="synced", people="1")
    # the status has polled the room at least once by now (it knows the room's state)
    assert shown["writtenAt"] == "" and shown["writtenBy"] == ""
    text = alice.locator("#ydjango-status").inner_text()
    assert text == "synced · 1 person", text

    edit_cell_end(alice, 0)
    alice.keyboard.type("0")
    wait_until(lambda: file_sources(path) == ["w = 10"], message="the autosave")
    shown = wait_for_status(alice, writtenBy="room")
    assert shown["writtenAt"] and shown["lastSaved"]
    wait_until(lambda: "saved" in alice.locator("#ydjango-status").inner_text())

    write_kernelless_notebook(path, ["w = 2"])  # another program
    wait_for_cells(alice, ["w = 2"])
    shown = wait_for_status(alice, writtenBy="outside")
    wait_until(lambda: "changed on disk" in alice.locator("#ydjango-status").inner_text(),
               message=lambda: alice.locator("#ydjango-status").inner_text())
    no_dialog(alice)


# --- opening what Jupyter opens ------------------------------------------------------------------


def test_a_44_notebook_with_cell_ids_opens_and_keeps_them(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    """An nbformat 4.4 file whose cells carry ids (as VS Code and Jupytext write them) opens,
    and saving keeps its format and its ids, giving the cell added in JupyterLab one too."""
    path = lab.root / "vscode.ipynb"
    cells = [{"cell_type": "code", "execution_count": None, "id": "first-code", "metadata": {},
              "outputs": [], "source": ["a = 1"]},
             {"cell_type": "markdown", "id": "notes", "metadata": {}, "source": ["Notes"]}]
    path.write_text(json.dumps({"cells": cells, "metadata": NO_KERNEL, "nbformat": 4,
                                "nbformat_minor": 4}, indent=1) + "\n")
    alice = sign_in(WRITER_TOKEN)
    open_notebook(alice, lab.notebook_url("vscode.ipynb"))
    wait_for_status(alice, state="synced")
    alice.evaluate(RECORD_SAVES_JS)
    edit_cell_end(alice, 0)
    alice.keyboard.type(" + 1")
    alice.keyboard.press("Escape")
    alice.keyboard.press("b")
    alice.keyboard.press("Enter")
    alice.keyboard.type("b = 2")
    wait_for_cells(alice, lambda cells: cells[:2] == ["a = 1 + 1", "b = 2"] and len(cells) == 3)
    assert press_save(alice) == "completed"
    no_dialog(alice)
    saved = json.loads(path.read_text())
    assert saved["nbformat_minor"] == 4
    assert ["".join(c["source"]) for c in saved["cells"]] == ["a = 1 + 1", "b = 2", "Notes"]
    ids = [c.get("id") for c in saved["cells"]]
    assert ids[0] == "first-code" and ids[2] == "notes" and isinstance(ids[1], str) and ids[1]


def test_a_file_jupyter_cannot_open_says_why(lab: LabServer,
                                            sign_in: Callable[[str], Any]) -> None:
    (lab.root / "broken.ipynb").write_text("this is not JSON\n")
    alice = sign_in(WRITER_TOKEN)
    alice.goto(lab.notebook_url("broken.ipynb"))
    dialog = alice.locator(".jp-Dialog", has_text="Document error")
    dialog.wait_for(timeout=30_000)
    assert "Not a notebook: the file is not valid JSON." in dialog.inner_text()


# --- one way to share -----------------------------------------------------------------------------

#: The top bar's share button (jupyter-collaboration-ui's command, run by us).
SHARE_BUTTON = "#jp-top-bar [data-command='collaboration:shared-link']"


def test_one_way_to_share(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    """The top bar's share button (its dialog's "Copy room link") and the notebook's "Copy
    room link" give the same kind of link, the room link, which opens the notebook in the
    same room."""
    write_kernelless_notebook(lab.root / "shared.ipynb", ["s = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab.notebook_url("shared.ipynb"))
    assert alice.locator(SHARE_BUTTON).count() == 1, "one share button in the top bar"
    # the stock server-link command is not there any more, under any name
    labels = alice.evaluate("""() => window.jupyterapp.commands.listCommands()
        .map(id => window.jupyterapp.commands.label(id))""")
    assert "Generate a Shared Link" not in labels

    alice.locator(SHARE_BUTTON).click()  # the share dialog, which copies the room link
    alice.locator(".jp-Dialog .ydjango-ShareDialog-copy").click()
    from_top_bar = copied_link(alice)
    alice.locator(".jp-Dialog .jp-mod-accept").click()
    alice.locator(".Toastify__toast").first.wait_for(state="detached", timeout=15_000)
    alice.locator(".jp-NotebookPanel-toolbar [data-command='ydjango:copy-room-link']").click()
    from_toolbar = copied_link(alice)
    room = "/jp/lab/workspaces/auto-room-"
    for link in (from_top_bar, from_toolbar):
        assert link.startswith(f"{lab.origin}{room}") and link.endswith("/tree/shared.ipynb")
    assert from_top_bar != from_toolbar, "each copy gets a workspace of its own"

    bob.goto(from_top_bar)
    start_editing(bob, time.monotonic())
    for page in (alice, bob):
        wait_for_status(page, state="synced", people="2")
    edit_cell_end(bob, 0)
    bob.keyboard.type("0")
    wait_for_cells(alice, ["s = 10"])


# --- the collaborators panel ---------------------------------------------------------------

#: Keep every WebSocket the page makes in ``window.__sockets`` (run before the page's scripts).
TRACK_SOCKETS_JS = """
(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
        constructor(...args) { super(...args); window.__sockets.push(this); }
    };
})();
"""
#: Close the page's connection to the awareness room as y-websocket's watchdog does after
#: 30 s without a message (it then connects again by itself); how many were open.
DROP_AWARENESS_JS = """() => {
    const open = window.__sockets.filter(ws => ws.url.includes('globalAwareness')
                                         && ws.readyState === WebSocket.OPEN);
    open.forEach(ws => ws.close());
    return open.length;
}"""
AWARENESS_OPEN_JS = """count => window.__sockets.filter(ws => ws.url.includes('globalAwareness')
                                               && ws.readyState === WebSocket.OPEN).length
                              === 1 && window.__sockets.length > count"""
COLLABORATORS_TAB = ".jp-SideBar .lm-TabBar-tab[data-id='jp-collaboration-panel']"


def test_the_collaborators_panel_lists_an_idle_user(lab: LabServer,
                                                   sign_in: Callable[[str], Any]) -> None:
    """Alice sits idle; her connection to the awareness room was lost and came back, as an
    idle connection does (y-websocket drops one that heard nothing for 30 s). Bob joins and
    opens the collaborators panel: Alice is listed within a few seconds."""
    write_kernelless_notebook(lab.root / "people.ipynb", ["p = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    alice.add_init_script(TRACK_SOCKETS_JS)
    open_notebook(alice, lab.notebook_url("people.ipynb"))
    wait_for_status(alice, state="synced")
    sockets = alice.evaluate("window.__sockets.length")
    assert alice.evaluate(DROP_AWARENESS_JS) == 1
    alice.wait_for_function(AWARENESS_OPEN_JS, arg=sockets, timeout=15_000)

    open_notebook(bob, lab.notebook_url("people.ipynb"))
    bob.locator(COLLABORATORS_TAB).click()
    start = time.monotonic()
    # (jupyter-collaboration lists her within 1 to 10 s: when her next renewal comes)
    bob.locator(".jp-CollaboratorsList .jp-Collaborator", has_text="Writer").wait_for(
        timeout=2_000)
    print(f"alice listed {time.monotonic() - start:.1f} s after bob opened the panel")
