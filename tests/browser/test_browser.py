"""The product end to end: ``jupyter lab`` with jupyter_ydjango, in real Chromium.

One JupyterLab server for the module (started by the tests, under the base URL ``/jp/``, its
files and settings in a temporary directory), one browser, and a fresh browser context for
each user of each test. ``writer`` and ``reader`` are the named users of
:mod:`jupyter_auth`; the server's own token signs in an anonymous user, a second writer.

The server saves a document only when asked (``save_delay`` is long): what reaches the file
was saved by Ctrl+S in the page.

When a test fails, a screenshot of each page it opened and the server's log are saved to
``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import (
    CELL_EDITORS,
    CELL_TEXTS_JS,
    READER_TOKEN,
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    cell_texts,
    copied_link,
    edit_cell_end,
    no_dialog,
    open_notebook,
    start_editing,
    status,
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

#: Where test_timings writes its measurements, if set (the committed ones are in
#: benchmarks/results/browser.json); a plain test run leaves the working tree alone.
RESULTS_FILE = os.environ.get("YDJANGO_BROWSER_RESULTS")
#: Keystrokes timed from one page to the other.
KEYSTROKES = 20

NOTEBOOKS = {
    "coedit.ipynb": ["x = 1"],
    "shared dir/room é.ipynb": ["y = 2"],
    "readonly.ipynb": ["z = 3"],
    "bench.ipynb": [""],
}


def write_notebook(path: Path, sources: list[str]) -> None:
    """A notebook without kernelspec (JupyterLab asks which kernel; the tests say none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [new_code_cell(source, id=f"cell-{i}") for i, source in enumerate(sources)]
    nbformat.write(new_notebook(cells=cells), path)


def read_notebook(path: Path) -> Any:
    """The notebook file, validated."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def sources(path: Path) -> list[str]:
    return [cell.source for cell in nbformat.read(path, as_version=4).cells]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    for name, cells in NOTEBOOKS.items():
        write_notebook(root / name, cells)
    server = LabServer(tmp, root, base_url="/jp/", args=("--YDjango.save_delay=3600",))
    yield server
    server.stop()




# --- 1. two users co-edit, see each other, save ---------------------------------------------


def test_two_users_coedit_see_each_other_and_save(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    path = lab.root / "coedit.ipynb"
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    # Bob is in the notebook, looking at the collaborators panel, when Alice joins (opening
    # it later is tested in test_browser_presence.py).
    open_notebook(bob, lab.notebook_url("coedit.ipynb"))
    bob.locator(".jp-SideBar .lm-TabBar-tab[data-id='jp-collaboration-panel']").click()
    bob.locator(".jp-CollaboratorsPanel").wait_for()
    wait_for_status(bob, state="synced", people="1")
    open_notebook(alice, lab.notebook_url("coedit.ipynb"))
    wait_for_cells(alice, ["x = 1"])
    for page in (alice, bob):
        wait_for_status(page, state="synced", people="2")
    bob.locator(".jp-CollaboratorsList .jp-Collaborator", has_text="Writer").wait_for()

    # Alice types into the cell, then adds a cell below (Escape, B) and types into it.
    edit_cell_end(alice, 0)
    alice.keyboard.type(" + 41")
    alice.keyboard.press("Escape")
    alice.keyboard.press("b")
    alice.keyboard.press("Enter")
    alice.keyboard.type("print('from alice')")
    expected = ["x = 1 + 41", "print('from alice')"]
    wait_for_cells(alice, expected)
    wait_for_cells(bob, expected)

    # Bob sees where Alice is: her cursor in the new cell's editor.
    bob.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-remote-cursor").wait_for()
    assert status(bob)["people"] == "2"

    # Nothing is saved yet; Ctrl+S in Alice's page saves both edits.
    assert sources(path) == ["x = 1"]
    saved_before = status(alice)["lastSaved"]
    alice.keyboard.press("Control+s")
    wait_until(lambda: sources(path) == expected,
               message=lambda: f"the file holds {sources(path)!r}")
    nb = read_notebook(path)
    assert [cell.cell_type for cell in nb.cells] == ["code", "code"]
    assert nb.cells[0].id == "cell-0"
    # The page knows it saved (no "file changed" dialog, a later save time).
    wait_until(lambda: status(alice)["lastSaved"] > saved_before,
               message=lambda: f"last saved {status(alice)['lastSaved']} (was {saved_before})")
    no_dialog(alice)
    no_dialog(bob)


# --- 2. the room link -----------------------------------------------------------------------


#: A workspace JupyterLab would restore for ``lab/tree/...``: the host's tabs.
HOST_WORKSPACE = {
    "data": {
        "layout-restorer:data": {
            "main": {
                "dock": {"type": "tab-area", "currentIndex": 0,
                         "widgets": ["notebook:coedit.ipynb"]},
                "current": "notebook:coedit.ipynb",
            },
        },
        "notebook:coedit.ipynb": {"data": {"path": "coedit.ipynb", "factory": "Notebook"}},
    },
    "metadata": {"id": "default"},
}
#: The room link of "shared dir/room é.ipynb": a new workspace of its own, no token.
ROOM_LINK = re.compile(
    r"(?P<base>.*/jp/lab/workspaces/)(?P<workspace>auto-room-[A-Za-z0-9]{12})"
    r"/tree/shared%20dir/room%20%C3%A9\.ipynb")


def workspace(lab: LabServer, name: str, data: dict[str, Any] | None = None) -> Any:
    """The saved JupyterLab workspace ``name`` (after saving ``data`` as it, if given)."""
    url = lab.url(f"lab/api/workspaces/{name}")
    headers = {"Authorization": f"token {TOKEN}", "Content-Type": "application/json"}
    if data is not None:
        put = urllib.request.Request(url, json.dumps(data).encode(), headers, method="PUT")
        urllib.request.urlopen(put, timeout=10).close()
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
        return json.load(r)


def test_room_link_opens_the_same_room(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    name = "shared dir/room é.ipynb"
    # The server's default workspace has another notebook open: what ``lab/tree/{path}``
    # would have brought along.
    host_workspace = workspace(lab, "default", HOST_WORKSPACE)
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab.notebook_url(name))
    alice.locator("[data-command='ydjango:copy-room-link']").click()
    link = copied_link(alice)
    match = ROOM_LINK.fullmatch(link)
    assert match, link
    assert match["base"] == f"{lab.origin}/jp/lab/workspaces/"
    assert "token" not in link

    # Bob (signed in, with his own cookie) follows the link: same notebook, same room, in a
    # workspace of its own holding only that notebook.
    start = time.monotonic()
    bob.goto(link)
    start_editing(bob, start)
    tabs = bob.locator(".lm-DockPanel-tabBar .lm-TabBar-tab")
    assert tabs.locator(".lm-TabBar-tabLabel").all_inner_texts() == ["room é.ipynb"]
    assert f"/jp/lab/workspaces/{match['workspace']}" in bob.url
    wait_for_cells(bob, ["y = 2"])
    for page in (alice, bob):
        wait_for_status(page, state="synced", people="2")
    edit_cell_end(bob, 0)
    bob.keyboard.type("  # bob was here")
    wait_for_cells(alice, ["y = 2  # bob was here"])
    # JupyterLab saved Bob's layout under the link's workspace; the default one is as it was.
    saved = lambda: workspace(lab, match["workspace"])["data"]  # noqa: E731
    wait_until(lambda: "notebook:shared dir/room é.ipynb" in saved(), message=lambda: repr(saved()))
    assert workspace(lab, "default") == host_workspace


# --- 3. a read-only user --------------------------------------------------------------------

#: Keys of the notebook's command mode that would change it: insert above and below, change
#: to markdown, cut, copy and paste, delete, undo, run.
COMMAND_MODE_EDITS = ["a", "b", "m", "x", "c", "v", "d", "d", "z", "Shift+Enter"]


def read_only_editor(page: Any, index: int) -> bool:
    """Whether CodeMirror has made the editor of cell ``index`` read-only."""
    return page.locator(CELL_EDITORS).nth(index).get_attribute("aria-readonly") == "true"


def test_read_only_user_cannot_change_the_notebook(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    path = lab.root / "readonly.ipynb"
    alice, reader = sign_in(WRITER_TOKEN), sign_in(READER_TOKEN)
    refusals: list[str] = []
    reader.on("console", lambda message: "Permission denied" in message.text
              and refusals.append(message.text))
    open_notebook(alice, lab.notebook_url("readonly.ipynb"))
    open_notebook(reader, lab.notebook_url("readonly.ipynb"))
    wait_for_status(reader, state="read-only", people="2")
    wait_for_status(alice, state="synced", people="2")

    # The reader's notebook is read-only and says so; Alice's is not.
    reader.locator(".jp-NotebookPanel.ydjango-mod-readOnly .ydjango-ReadOnlyLabel").wait_for()
    assert read_only_editor(reader, 0)
    assert not read_only_editor(alice, 0)
    assert alice.locator(".ydjango-mod-readOnly").count() == 0

    # (The stock frontend's own changes on joining, such as the document id in the shared
    # state, are refused already; the reader's attempts below must not add any.)
    refused_on_join = len(refusals)

    # The reader types into the cell, then tries to change the notebook from command mode:
    # nothing changes, in the reader's own view too, and a notification says why.
    edit_cell_end(reader, 0)
    reader.keyboard.type(" # READER")
    reader.locator(".Toastify__toast", has_text="read-only").wait_for()
    assert cell_texts(reader) == ["z = 3"]
    reader.keyboard.press("Escape")
    for key in COMMAND_MODE_EDITS:
        reader.keyboard.press(key)
    assert cell_texts(reader) == ["z = 3"]
    assert reader.locator(".jp-Notebook .jp-Cell.jp-CodeCell").count() == 1

    # Alice types and adds a cell; the reader sees both, and the new cell is read-only for
    # the reader too.
    edit_cell_end(alice, 0)
    alice.keyboard.type(" # alice")
    alice.keyboard.press("Escape")
    alice.keyboard.press("b")
    alice.keyboard.press("Enter")
    alice.keyboard.type("w = 4")
    expected = ["z = 3 # alice", "w = 4"]
    wait_for_cells(alice, expected)
    wait_for_cells(reader, expected)
    assert read_only_editor(reader, 1)
    edit_cell_end(reader, 1)
    reader.keyboard.type(" # READER")
    assert cell_texts(reader) == expected

    alice.keyboard.press("Control+s")
    wait_until(lambda: sources(path) == expected,
               message=lambda: f"the file holds {sources(path)!r}")
    read_notebook(path)
    assert cell_texts(alice) == expected
    assert cell_texts(reader) == expected
    no_dialog(alice)
    # Nothing the reader tried reached the server: it had nothing more to refuse.
    assert len(refusals) == refused_on_join, refusals


# --- 4. timings -----------------------------------------------------------------------------

#: Record when each key goes down in the page, on the shared clock of the machine (ms).
RECORD_KEYS_JS = """() => {
    window.__keys = [];
    document.addEventListener('keydown', event => window.__keys.push(
        [performance.timeOrigin + performance.now(), event.key]), true);
}"""
#: Record each text the first cell's editor shows, with the time it showed it (ms).
RECORD_FIRST_CELL_JS = """selector => {
    window.__seen = [];
    const editor = document.querySelector(selector);
    new MutationObserver(() => window.__seen.push(
        [performance.timeOrigin + performance.now(), editor.textContent]
    )).observe(editor, {subtree: true, childList: true, characterData: true});
}"""
FIRST_CELL_ENDS_WITH_JS = f"text => ({CELL_TEXTS_JS})()?.[0]?.endsWith(text)"


def time_to_editable(page: Any, url: str) -> float:
    """Seconds from navigation until a keystroke shows in the first cell's editor."""
    start = time.monotonic()
    page.goto(url)
    start_editing(page, start)
    edit_cell_end(page, 0)
    page.keyboard.type("#")
    page.wait_for_function(FIRST_CELL_ENDS_WITH_JS, arg="#", polling=5)
    return time.monotonic() - start


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
        "samples": [round(sample, 1) for sample in samples],
    }


def test_timings(lab: LabServer, sign_in: Callable[[str], Any], chromium: Any,
                 capsys: pytest.CaptureFixture[str]) -> None:
    """Measured, printed, and written to ``$YDJANGO_BROWSER_RESULTS`` if set; bounds are
    loose."""
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    editable = {
        "alice": time_to_editable(alice, lab.notebook_url("bench.ipynb")),
        "bob": time_to_editable(bob, lab.notebook_url("bench.ipynb")),
    }
    wait_for_cells(alice, ["##"])
    wait_for_cells(bob, ["##"])
    wait_for_status(bob, state="synced", people="2")

    # Keystroke to screen: Alice types one key at a time; each is timed from its keydown in
    # Alice's page to the mutation of Bob's editor that shows it.
    alice.evaluate(RECORD_KEYS_JS)
    bob.evaluate(RECORD_FIRST_CELL_JS, CELL_EDITORS)
    edit_cell_end(alice, 0)
    keys = "abcdefghijklmnopqrstuvwxyz"[:KEYSTROKES]
    text = "##"
    driver_ms = []
    for key in keys:
        text += key
        start = time.perf_counter()
        alice.keyboard.type(key)
        bob.wait_for_function(FIRST_CELL_ENDS_WITH_JS, arg=text, polling=5)
        driver_ms.append((time.perf_counter() - start) * 1000)
    pressed = [t for t, key in alice.evaluate("window.__keys") if key in keys]
    seen = bob.evaluate("window.__seen")
    latency_ms = []
    for i, key_time in enumerate(pressed):
        shown = "##" + keys[: i + 1]
        latency_ms.append(next(t for t, content in seen if content == shown) - key_time)
    assert len(latency_ms) == KEYSTROKES
    wait_for_cells(alice, ["##" + keys])

    results = {
        "what": "JupyterLab in headless Chromium, two browser contexts, one jupyter lab "
                "process with jupyter_ydjango (embedded Django side) on this machine",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
                   f"{platform.python_version()}",
        "chromium": chromium.version,
        "jupyterlab": version("jupyterlab"),
        "page_to_editable_s": {user: round(seconds, 2) for user, seconds in editable.items()},
        "keystrokes": KEYSTROKES,
        "keystroke_to_other_page_ms": summary(latency_ms),
        "keystroke_to_other_page_with_driver_ms": summary(driver_ms),
    }
    if RESULTS_FILE:
        Path(RESULTS_FILE).write_text(json.dumps(results, indent=1) + "\n")
    latency = results["keystroke_to_other_page_ms"]
    with capsys.disabled():
        print(f"\nbrowser timings: page to editable {editable['alice']:.2f} s (alice), "
              f"{editable['bob']:.2f} s (bob); keystroke in alice's page to bob's screen: "
              f"median {latency['median']} ms, p90 {latency['p90']} ms, "
              f"max {latency['max']} ms over {KEYSTROKES} keys "
              + (f" (written to {RESULTS_FILE})" if RESULTS_FILE else ""))
    assert max(editable.values()) < 30
    assert latency["median"] < 2000
