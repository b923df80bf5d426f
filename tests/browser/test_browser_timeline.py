"""The document timeline of JupyterLab's stock frontend, in real Chromium.

``jupyter lab`` with jupyter_ydjango (under ``/jp/``; bursts of edits end after a second of
quiet, the room saves half a second after the last change), one browser, a fresh browser
context per user. The timeline is jupyter-docprovider's: the history icon in the status bar,
its slider and its "Restore version" button.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import (
    EDITOR_TOKEN,
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    edit_cell_end,
    file_sources,
    open_notebook,
    unavailable,
    wait_for_cells,
    wait_until,
    write_kernelless_notebook,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

#: Seconds of quiet that end a burst of edits (a point of the timeline).
BURST_GAP = 1.0
#: The status bar's timeline (jupyter-docprovider's).
HISTORY_ICON = "#jp-slider-status-bar [title='Document Timeline']"
SLIDER = "#jp-slider-status-bar input.jp-Slider"
RESTORE = "#jp-slider-status-bar .jp-restoreBtn"
#: Who made the point the slider shows (jupyter-ydjango's item beside the slider).
AUTHORS = "#jp-ydjango-timeline-authors"
#: The width of Chromium's thumb of an unstyled range input (the slider's), in CSS pixels: its
#: centre runs from half of it right of the slider's left end to half of it left of its right.
SLIDER_THUMB = 16


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    write_kernelless_notebook(root / "history.ipynb", ["x = 1"])  # opening changes nothing
    with pytest.MonkeyPatch.context() as patch:  # the embedded side reads its environment
        patch.setenv("YDJANGO_HISTORY_BURST_GAP", str(BURST_GAP))
        server = LabServer(tmp, root, base_url="/jp/", args=("--YDjango.save_delay=0.5",))
    yield server
    server.stop()


def drag_slider_to(page: Any, index: int) -> None:
    """Drag the timeline's slider by its thumb to point ``index`` (0: the oldest), passing over
    the points in between, as a person drags it."""
    slider = page.locator(SLIDER)
    last, start = int(slider.get_attribute("max") or 0), int(slider.input_value())
    box = slider.bounding_box()
    assert box is not None and last > 0

    def point_x(point: int) -> float:  # the thumb's centre at that point
        return box["x"] + SLIDER_THUMB / 2 + (box["width"] - SLIDER_THUMB) * point / last

    y = box["y"] + box["height"] / 2
    page.mouse.move(point_x(start), y)
    page.mouse.down()
    page.mouse.move(point_x(index), y, steps=4 * abs(index - start) + 1)
    page.mouse.up()


def test_timeline_shows_an_older_version_and_restores_it(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    path = lab.root / "history.ipynb"
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab.notebook_url("history.ipynb"))
    for text in (" + 1", " + 2"):  # two bursts: with the import, three points
        edit_cell_end(alice, 0)
        alice.keyboard.type(text)
        time.sleep(BURST_GAP * 2)
    latest = ["x = 1 + 1 + 2"]
    wait_until(lambda: file_sources(path) == latest, message="the edits saved")
    open_notebook(bob, lab.notebook_url("history.ipynb"))
    wait_for_cells(bob, latest)

    alice.locator(HISTORY_ICON).click()
    slider = alice.locator(SLIDER)
    slider.wait_for()
    assert slider.get_attribute("max") == "2"
    drag_slider_to(alice, 0)
    wait_until(lambda: slider.input_value() == "0", message="the slider at the start")
    wait_for_cells(alice, ["x = 1"])  # the notebook as it was opened first
    # Bob, meanwhile, sees the live notebook, unchanged (and so does the file)
    time.sleep(1)
    wait_for_cells(bob, latest)
    assert file_sources(path) == latest

    alice.locator(RESTORE).click()
    slider.wait_for(state="detached")  # the frontend's answer to a successful restore
    for page in (alice, bob):
        wait_for_cells(page, ["x = 1"])
    wait_until(lambda: file_sources(path) == ["x = 1"], message="the restored version saved")
    # both keep editing the restored version together
    edit_cell_end(bob, 0)
    bob.keyboard.type(" + 3")
    wait_for_cells(alice, ["x = 1 + 3"])


def test_timeline_slider_dragged_over_every_point(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    """Three bursts, by the writer, the editor, the writer: the slider shows each version,
    and beside it who made it."""
    path = lab.root / "points.ipynb"
    write_kernelless_notebook(path, ["a = 1", "b = a"])
    versions = [["a = 1", "b = a"]]  # the notebook at each point of its timeline
    authors = ["Changed by: nobody recorded"]
    alice, bob = sign_in(WRITER_TOKEN), sign_in(EDITOR_TOKEN)
    for page in (alice, bob):
        open_notebook(page, lab.notebook_url("points.ipynb"))
        wait_for_cells(page, versions[0])
    for page, cell, text in ((alice, 0, " + 1"), (bob, 1, " * 2"), (alice, 0, " + 3")):
        edit_cell_end(page, cell)
        page.keyboard.type(text)
        versions.append([*versions[-1]])
        versions[-1][cell] += text
        authors.append("Changed by: " + ("Writer" if page is alice else "Editor"))
        wait_for_cells(alice, versions[-1])
        wait_until(lambda edited=versions[-1]: file_sources(path) == edited,
                   message=f"edit {len(versions) - 1} saved")
        # the edit is stored before it is saved: past the gap, the next edit starts a burst
        time.sleep(BURST_GAP * 1.5)

    assert not alice.locator(AUTHORS).is_visible()  # nothing beside a closed timeline
    alice.locator(HISTORY_ICON).click()
    slider = alice.locator(SLIDER)
    slider.wait_for()
    assert slider.get_attribute("max") == "3"  # the import and the three bursts
    assert slider.input_value() == "3"
    wait_for_cells(alice, versions[3])
    label = alice.locator(AUTHORS)
    wait_until(lambda: label.inner_text() == authors[3],
               message=lambda: f"authors {label.inner_text()!r}, not {authors[3]!r}")
    for index in (0, 3, 1, 2):
        drag_slider_to(alice, index)
        wait_until(lambda index=index: slider.input_value() == str(index),
                   message=lambda index=index: f"slider at {slider.input_value()}, not {index}")
        wait_for_cells(alice, versions[index])
        wait_until(lambda index=index: label.inner_text() == authors[index],
                   message=lambda index=index: f"authors {label.inner_text()!r} at {index}")
    assert file_sources(path) == versions[3]  # moving through the timeline changes no file
    wait_for_cells(bob, versions[3])  # nor the notebook of anyone else

    alice.locator(RESTORE).click()  # the slider shows point 2: restore it
    slider.wait_for(state="detached")
    wait_for_cells(alice, versions[2])
    wait_for_cells(bob, versions[2])
    wait_until(lambda: file_sources(path) == versions[2], message="the restored version saved")
    wait_until(lambda: not label.is_visible(), message="the authors gone with the slider")
