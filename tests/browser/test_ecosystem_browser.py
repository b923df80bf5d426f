"""The extensions users install next to jupyter-collaboration, on our rooms, in real Chromium:
jupyterlab-chat (chats are collaborative documents of type ``chat``) and
jupyter-server-nbmodel (cells executed by the server, outputs written into the live room).

One ``jupyter lab`` for the module (with both extensions installed from PyPI, and without
jupyter-collaboration); each user gets a browser context of their own. Rooms unload two
seconds after their last client left, so that a test passes only if the server keeps what
it must keep (a running cell's room) and saves what it must save.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import nbformat
import pytest
from browser import (
    CELL_EDITORS,
    CHROMIUM,
    CHROMIUM_ARGS,
    OPEN_TIMEOUT_MS,
    TIMEOUT_MS,
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    unavailable,
    wait_until,
)
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

CHAT_INPUT = ".jp-chat-input-container textarea:not([aria-hidden])"
CHAT_MESSAGES = """() => [...document.querySelectorAll(
    '.jp-MainAreaWidget:not(.lm-mod-hidden) .jp-chat-message .jp-chat-rendered-message')]
    .map(message => message.innerText.trim())"""
OUTPUTS = """() => [...document.querySelectorAll(
    '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell')].map(cell =>
    [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText).join(''))"""
LONG_CELL = "import time\nprint('started', flush=True)\ntime.sleep(10)\nprint('finished')"


def write_notebook(path: Any, *sources: str) -> None:
    """A notebook with a Python kernel (JupyterLab starts it when the notebook opens)."""
    nb = new_notebook(cells=[new_code_cell(s, id=f"cell-{i}") for i, s in enumerate(sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("ecosystem")
    root = tmp / "root"
    root.mkdir()
    write_notebook(root / "shared.ipynb", "print('hello from the server')")
    write_notebook(root / "long.ipynb", LONG_CELL)
    (root / "team.chat").write_text("")
    server = LabServer(tmp, root, args=("--YDjango.save_delay=0.5",
                                        "--YDjango.room_unload_delay=2"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def sign_in(lab: LabServer, chromium: Any,
            request: pytest.FixtureRequest) -> Iterator[Callable[[str], Any]]:
    """``sign_in(token)``: a page in a browser context of its own, signed in with ``token``.
    On failure, the pages' consoles and the server's log are printed."""
    contexts: list[Any] = []
    consoles: list[list[str]] = []
    failed_before = request.session.testsfailed

    def new_page(token: str) -> Any:
        context = chromium.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        assert context.request.get(lab.url("api/me", token=token)).ok
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        consoles.append(console)
        return page

    yield new_page
    if request.session.testsfailed > failed_before:
        for i, console in enumerate(consoles):
            print(f"--- console of page {i}\n" + "\n".join(console[-40:]))
        print("--- server log\n" + lab.log()[-6000:])
    for context in contexts:
        if context.pages or not context.browser:
            context.close()


def open_notebook(page: Any, lab: LabServer, path: str, workspace: str) -> None:
    """Open a notebook and wait until its kernel is idle."""
    page.goto(lab.url(f"lab/workspaces/{workspace}/tree/{path}"))
    page.locator(CELL_EDITORS).first.wait_for(timeout=OPEN_TIMEOUT_MS)
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(
        timeout=OPEN_TIMEOUT_MS)


def run_first_cell(page: Any) -> None:
    """Shift+Enter in the first cell, which jupyter-server-nbmodel's JupyterLab extension
    sends to the server to execute."""
    def is_execution(request: Any) -> bool:
        return request.method == "POST" and re.search(
            r"/api/kernels/[^/]+/execute", request.url) is not None

    page.locator(CELL_EDITORS).first.click()
    # the key goes where the focus is: to the cell's editor once it has it (a click while
    # the notebook still lays its cells out can leave it elsewhere, and the key is lost)
    page.wait_for_function("""selector => document.activeElement !== null
        && document.activeElement.closest(selector) !== null""", arg=CELL_EDITORS,
                           timeout=OPEN_TIMEOUT_MS)
    with page.expect_request(is_execution, timeout=OPEN_TIMEOUT_MS):
        page.keyboard.press("Shift+Enter")


def executed_by_the_server(lab: LabServer, path: str) -> bool:
    """Whether jupyter-server-nbmodel logged an execution written into the live room."""
    return re.search(rf"Executed cell cell-0 of document 'json:notebook:[^']+' \(path "
                     rf"'{re.escape(path)}'\): status=ok, outputs=\d+, written to shared "
                     rf"document=True", lab.log()) is not None


def outputs(page: Any) -> list[str]:
    return page.evaluate(OUTPUTS)


def file_outputs(path: Any) -> str:
    cell = nbformat.read(path, 4).cells[0]
    return "".join(output.get("text", "") for output in cell.outputs)


# --- jupyter-server-nbmodel ------------------------------------------------------------------


def test_a_cell_executed_through_the_server_shows_its_output_to_a_second_user(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    open_notebook(alice, lab, "shared.ipynb", "alice-1")
    open_notebook(bob, lab, "shared.ipynb", "bob-1")
    run_first_cell(alice)
    for page in (alice, bob):
        wait_until(lambda page=page: outputs(page)[0] == "hello from the server\n",
                   timeout=30, message=lambda page=page: f"outputs are {outputs(page)}")
    wait_until(lambda: file_outputs(lab.root / "shared.ipynb") == "hello from the server\n",
               timeout=10, message="the output is not in the file")
    assert executed_by_the_server(lab, "shared.ipynb")


def test_a_browser_closed_mid_execution_still_leaves_the_output_in_the_file(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    alice = sign_in(WRITER_TOKEN)
    open_notebook(alice, lab, "long.ipynb", "alice-2")
    run_first_cell(alice)
    wait_until(lambda: outputs(alice)[0] == "started\n", timeout=30,
               message=lambda: f"outputs are {outputs(alice)}")
    alice.context.close()  # the laptop is closed: no client is left in the room
    started = time.monotonic()

    path = lab.root / "long.ipynb"
    wait_until(lambda: file_outputs(path) == "started\nfinished\n", timeout=40,
               message=lambda: f"the file's outputs are {file_outputs(path)!r}")
    assert nbformat.read(path, 4).cells[0].execution_count == 1
    assert time.monotonic() - started > 5  # it finished long after the room's unload delay
    assert executed_by_the_server(lab, "long.ipynb")

    # and the room holds them: a user who comes back sees them
    bob = sign_in(TOKEN)
    open_notebook(bob, lab, "long.ipynb", "bob-2")
    wait_until(lambda: outputs(bob)[0] == "started\nfinished\n",
               message=lambda: f"outputs are {outputs(bob)}")


# --- jupyterlab-chat (last: it restarts the server) -----------------------------------------


def test_two_users_chat_and_the_messages_are_in_the_file_after_a_restart(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
    for page, workspace in ((alice, "alice-3"), (bob, "bob-3")):
        page.goto(lab.url(f"lab/workspaces/{workspace}/tree/team.chat"))
        page.locator(CHAT_INPUT).wait_for(timeout=OPEN_TIMEOUT_MS)
    send(alice, "Hello Bob, the release is ready")
    wait_until(lambda: bob.evaluate(CHAT_MESSAGES) == ["Hello Bob, the release is ready"],
               message=lambda: f"Bob sees {bob.evaluate(CHAT_MESSAGES)}")
    send(bob, "Great, shipping it")
    expected = ["Hello Bob, the release is ready", "Great, shipping it"]
    for page in (alice, bob):
        wait_until(lambda page=page: page.evaluate(CHAT_MESSAGES) == expected,
                   message=lambda page=page: f"the chat shows {page.evaluate(CHAT_MESSAGES)}")
    for page in (alice, bob):
        page.context.close()
    # the chat was a room of ours, loaded from the file once
    assert len(re.findall(r"text:chat:[0-9a-f-]+: imported team\.chat", lab.log())) == 1

    lab.restart()
    chat = json.loads((lab.root / "team.chat").read_text())
    assert [message["body"] for message in chat["messages"]] == expected
    senders = [chat["users"][message["sender"]]["display_name"] for message in chat["messages"]]
    assert senders[0] == "Writer" and senders[1].startswith("Anonymous")
    assert all(message["raw_time"] is False for message in chat["messages"])  # server times

    carol = sign_in(WRITER_TOKEN)
    carol.goto(lab.url("lab/workspaces/carol/tree/team.chat"))
    carol.locator(CHAT_INPUT).wait_for(timeout=OPEN_TIMEOUT_MS)
    wait_until(lambda: carol.evaluate(CHAT_MESSAGES) == expected,
               message=lambda: f"after the restart the chat shows {carol.evaluate(CHAT_MESSAGES)}")


def send(page: Any, text: str) -> None:
    page.locator(CHAT_INPUT).fill(text)
    page.keyboard.press("Enter")
