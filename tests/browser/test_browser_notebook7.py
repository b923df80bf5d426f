"""Notebook 7 (``{base}notebooks/{path}``) on jupyter_ydjango, in real Chromium.

Notebook 7 has no status bar: the room's status is in the notebook's toolbar. Its room link
opens Notebook 7, not JupyterLab. One ``jupyter lab`` server for the module (it serves
Notebook 7's pages too), saving only when asked (``save_delay`` is long: what reaches the
file was saved by Ctrl+S).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from browser import (
    READER_TOKEN,
    TIMEOUT_MS,
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    copied_link,
    edit_cell_end,
    file_sources,
    no_dialog,
    start_editing,
    unavailable,
    wait_for_cells,
    wait_until,
    write_kernelless_notebook,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

try:
    import notebook  # noqa: F401
except ImportError:  # pragma: no cover
    pytestmark.append(pytest.mark.skip(reason="Notebook 7 is not installed (pip install notebook)"))

#: The room status item in the notebook's toolbar.
TOOLBAR_STATUS = ".jp-NotebookPanel-toolbar .ydjango-RoomStatus"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("notebook7")
    root = tmp / "root"
    root.mkdir()
    server = LabServer(tmp, root, base_url="/jp/", args=("--YDjango.save_delay=3600",))
    yield server
    server.stop()




def notebook7_url(lab: LabServer, path: str) -> str:
    return lab.url("notebooks/" + quote(path))


def open_in_notebook7(page: Any, url: str) -> None:
    start = time.monotonic()
    page.goto(url)
    start_editing(page, start)
    assert page.evaluate("JSON.parse(document.getElementById('jupyter-config-data')"
                         ".textContent).appName") == "Jupyter Notebook"


def toolbar_status(page: Any) -> dict[str, str]:
    locator = page.locator(TOOLBAR_STATUS)
    return locator.evaluate("e => ({...e.dataset, text: e.textContent})") if locator.count() else {}


def wait_for_toolbar_status(page: Any, **expected: str) -> dict[str, str]:
    last: list[dict[str, str]] = [{}]

    def condition() -> bool:
        last[0] = toolbar_status(page)
        return all(last[0].get(key) == value for key, value in expected.items())

    wait_until(condition, message=lambda: f"status is {last[0]!r}, expected {expected!r}")
    return last[0]


def test_two_users_type_both_ways_and_save(lab: LabServer,
                                           sign_in: Callable[[str], Any]) -> None:
    path = lab.root / "together.ipynb"
    write_kernelless_notebook(path, ["x = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_in_notebook7(alice, notebook7_url(lab, "together.ipynb"))
    open_in_notebook7(bob, notebook7_url(lab, "together.ipynb"))
    for page in (alice, bob):
        shown = wait_for_toolbar_status(page, state="synced", people="2")
        assert shown["text"].startswith("synced · 2 people"), shown
        assert page.locator("#ydjango-status").count() == 0, "no status bar in Notebook 7"

    edit_cell_end(alice, 0)
    alice.keyboard.type(" + 1")
    wait_for_cells(bob, ["x = 1 + 1"], timeout=5)
    edit_cell_end(bob, 0)
    bob.keyboard.type(" + 2")
    wait_for_cells(alice, ["x = 1 + 1 + 2"], timeout=5)

    assert file_sources(path) == ["x = 1"]
    bob.keyboard.press("Control+s")
    wait_until(lambda: file_sources(path) == ["x = 1 + 1 + 2"],
               message=lambda: f"the file holds {file_sources(path)!r}")
    for page in (alice, bob):
        shown = wait_for_toolbar_status(page, writtenBy="room")
        wait_until(lambda page=page: "saved" in toolbar_status(page)["text"])
        no_dialog(page)
    assert shown["lastSaved"]


def test_the_room_link_opens_notebook7(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    write_kernelless_notebook(lab.root / "linked dir" / "nb é.ipynb", ["y = 1"])
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_in_notebook7(alice, notebook7_url(lab, "linked dir/nb é.ipynb"))
    alice.locator(".jp-NotebookPanel-toolbar [data-command='ydjango:copy-room-link']").click()
    link = copied_link(alice)
    assert link == f"{lab.origin}/jp/notebooks/linked%20dir/nb%20%C3%A9.ipynb"
    alice.locator(".Toastify__toast").first.wait_for(state="detached", timeout=15_000)
    # the top bar's share button (its dialog) gives the same link
    alice.locator("[data-command='collaboration:shared-link']").first.click()
    alice.locator(".jp-Dialog .ydjango-ShareDialog-copy").click()
    assert copied_link(alice) == link
    alice.locator(".jp-Dialog .jp-mod-accept").click()

    open_in_notebook7(bob, link)
    for page in (alice, bob):
        wait_for_toolbar_status(page, state="synced", people="2")
    edit_cell_end(bob, 0)
    bob.keyboard.type("0")
    wait_for_cells(alice, ["y = 10"], timeout=TIMEOUT_MS / 1000)


def test_a_reader_sees_read_only(lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    write_kernelless_notebook(lab.root / "read.ipynb", ["z = 1"])
    reader = sign_in(READER_TOKEN)
    open_in_notebook7(reader, notebook7_url(lab, "read.ipynb"))
    shown = wait_for_toolbar_status(reader, state="read-only", people="1")
    assert shown["text"].startswith("read-only"), shown
