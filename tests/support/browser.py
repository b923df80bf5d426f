"""JupyterLab in a real browser: a ``jupyter lab`` process and helpers for its pages.

:class:`LabServer` runs ``python -m jupyterlab`` (the ``jupyter lab`` command) on a free port
with everything it writes in a temporary directory: Jupyter config, data and runtime
directories, JupyterLab user settings and workspaces, the embedded Django side's database.
Its users are those of :mod:`jupyter_auth` (``writer``, ``reader``, ``nobody`` by token); the
server's own token (:data:`TOKEN`) signs in an anonymous user with a generated name, like a
default ``jupyter lab``.

The page helpers drive Playwright's synchronous API on the system's Chromium
(:data:`CHROMIUM`; ``playwright install`` is never needed).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import nbformat
from daphne_servers import PROJECT_DIR, SUPPORT_DIR, Server, server_env
from jupyter_servers import EXTENSION_CONFIG, NO_JUPYTEXT
from nbformat.v4 import new_code_cell, new_notebook

#: The browser: Debian's chromium package.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
#: The server's own token (an anonymous user), and the named users' tokens.
TOKEN = "browser-tests-token"
WRITER_TOKEN = "writer-token"
EDITOR_TOKEN = "editor-token"
READER_TOKEN = "reader-token"
#: Who each token signs in (screenshot names).
USERS = {WRITER_TOKEN: "writer", EDITOR_TOKEN: "editor", READER_TOKEN: "reader",
         TOKEN: "anonymous"}
#: Where a failed test's screenshots, page consoles and server log go.
ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts"

#: JupyterLab user settings of the test server: no news, no update check, no announcement
#: prompt (each would pop a toast over the notebook); every cell attached to the DOM.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}

#: How long a page may take to show a notebook, and anything else to happen, in ms.
OPEN_TIMEOUT_MS = 30_000
TIMEOUT_MS = 10_000

#: The text of each cell of the current notebook, as its CodeMirror editor shows it.
CELL_TEXTS_JS = """() => {
    const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
    if (!panel) return null;
    return [...panel.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell =>
        [...cell.querySelectorAll('.cm-content .cm-line')].map(l => l.textContent).join('\\n'));
}"""

#: The current notebook's editors.
CELL_EDITORS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell .cm-content"
#: Our status item, and the stock kernel picker a notebook without kernelspec opens with.
STATUS = "#ydjango-status"
KERNEL_DIALOG = ".jp-Dialog"
KERNEL_DIALOG_TITLE = "Select Kernel"

T = TypeVar("T")


def unavailable() -> str | None:
    """Why browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} not found (install Debian's chromium package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


def wait_until(condition: Callable[[], T], *, timeout: float = TIMEOUT_MS / 1000,
               interval: float = 0.02, message: str | Callable[[], str] = "") -> T:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"not within {timeout} s: {text}")
        time.sleep(interval)


class LabServer:
    """``jupyter lab`` serving ``root`` under ``base_url``, with jupyter_ydjango enabled."""

    def __init__(self, tmp: Path, root: Path, *, base_url: str = "/jp/",
                 args: tuple[str, ...] = (), python: str = sys.executable,
                 extension: bool = True, jupytext: bool = False,
                 authorizer: str = "jupyter_auth.ReadOnlyAuthorizer",
                 identity_provider: str = "jupyter_auth.TokenUsers") -> None:
        """``python`` runs JupyterLab (another environment's: the benchmarks' comparison
        with jupyter-collaboration); without ``extension``, jupyter_ydjango is not enabled;
        ``authorizer`` and ``identity_provider``: the server's classes of each (by default
        the test users of ``jupyter_auth``)."""
        self.tmp, self.root, self.base_url = tmp, root, base_url
        self._workspaces = 0
        config_d = tmp / "jupyter-config" / "jupyter_server_config.d"
        config_d.mkdir(parents=True)
        if extension:
            shutil.copy(EXTENSION_CONFIG, config_d)
        if not jupytext:  # installed with the test extras, it enables itself everywhere
            (config_d.parent / "jupyter_server_config.json").write_text(json.dumps(NO_JUPYTEXT))
        for name, values in LAB_SETTINGS.items():
            path = tmp / "lab-settings" / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        # The server imports the users and authorizer from a directory of their own, so that
        # no test module can shadow an installed package in a real JupyterLab.
        modules = tmp / "python"
        modules.mkdir()
        shutil.copy(SUPPORT_DIR / "jupyter_auth.py", modules)
        (tmp / "ydjango").mkdir()
        env = server_env(
            tmp / "ydjango",
            JUPYTER_CONFIG_DIR=str(tmp / "jupyter-config"),
            JUPYTER_DATA_DIR=str(tmp / "jupyter-data"),
            JUPYTER_RUNTIME_DIR=str(tmp / "jupyter-runtime"),
            JUPYTERLAB_SETTINGS_DIR=str(tmp / "lab-settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp / "lab-workspaces"),
            JUPYTER_PLATFORM_DIRS="0",
            PYTHONPATH=str(modules),
        )
        self._argv = [
            python, "-m", "jupyterlab",
            "--ServerApp.ip=127.0.0.1", "--ServerApp.port={port}", "--ServerApp.port_retries=0",
            "--allow-root", "--no-browser",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.identity_provider_class={identity_provider}",
            f"--ServerApp.authorizer_class={authorizer}",
            f"--ServerApp.root_dir={root}",
            f"--ServerApp.base_url={base_url}",
            *args,
        ]
        self._env = env
        self._runs = 1
        self.server = Server(self._argv, env, tmp / "jupyterlab.log")

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def url(self, path: str, *, token: str | None = None) -> str:
        """Absolute URL of ``path`` (relative to the base URL, not encoded here)."""
        return f"{self.origin}{self.base_url}{path}" + (f"?token={token}" if token else "")

    def notebook_url(self, path: str, *, token: str | None = None,
                     workspace: bool = True) -> str:
        """The JupyterLab URL that opens the notebook at ``path`` (relative to the root).

        With ``workspace`` (the default), the page gets a workspace of its own: JupyterLab
        keeps workspaces on the server, shared by every user, so a page opened in the default
        workspace (``lab/tree/...``) reopens whatever earlier pages had open.
        """
        self._workspaces += 1
        prefix = f"lab/workspaces/page-{self._workspaces}/" if workspace else "lab/"
        return self.url(prefix + "tree/" + quote(path), token=token)

    def log(self) -> str:
        return self.server.log()

    def stop(self) -> None:
        self.server.stop()

    def restart(self) -> None:
        """Stop the server and start it again, on a new port (its log in a new file)."""
        self.server.stop()
        self._runs += 1
        self.server = Server(self._argv, self._env, self.tmp / f"jupyterlab-{self._runs}.log")


# --- pages ----------------------------------------------------------------------------------


def cell_texts(page: Any) -> list[str] | None:
    """The text of each cell of the notebook shown in ``page`` (None: no notebook shown)."""
    return page.evaluate(CELL_TEXTS_JS)


def status(page: Any) -> dict[str, str]:
    """The ``data-*`` attributes of our status item."""
    return page.locator(STATUS).evaluate("element => ({...element.dataset})")


def open_notebook(page: Any, url: str, *, kernel_picker: bool = True) -> float:
    """Go to ``url`` (a notebook), get past the kernel picker, and wait until the first cell's
    editor is shown and editable. Returns the seconds from navigation to then. Without
    ``kernel_picker``, JupyterLab is not expected to offer one (a user who may not run the
    notebook: jupyter_ydjango's labextension starts no kernel for them)."""
    start = time.monotonic()
    page.goto(url)
    return start_editing(page, start, kernel_picker=kernel_picker)


def start_editing(page: Any, start: float, *, kernel_picker: bool = True) -> float:
    """Dismiss the kernel picker of the notebook being opened ("No Kernel": the tests start no
    kernels) and wait for an editable first cell; seconds since ``start``."""
    if kernel_picker:
        dialog = page.locator(KERNEL_DIALOG, has_text=KERNEL_DIALOG_TITLE)
        dialog.locator(".jp-Dialog-button.jp-mod-reject").click(timeout=OPEN_TIMEOUT_MS)
        dialog.wait_for(state="detached", timeout=TIMEOUT_MS)
    editor = page.locator(CELL_EDITORS).first
    editor.wait_for(state="visible", timeout=OPEN_TIMEOUT_MS)
    page.wait_for_function(
        "selector => document.querySelector(selector)?.contentEditable === 'true'",
        arg=CELL_EDITORS, timeout=TIMEOUT_MS)
    return time.monotonic() - start


def edit_cell_end(page: Any, index: int) -> None:
    """Put the cursor at the end of cell ``index``'s editor (edit mode)."""
    page.locator(CELL_EDITORS).nth(index).click()
    page.keyboard.press("Control+End")


def wait_for_cells(page: Any, expected: list[str] | Callable[[list[str]], bool], *,
                   timeout: float = TIMEOUT_MS / 1000) -> list[str]:
    """Wait until the cells of ``page`` are ``expected`` (or satisfy it); return them."""
    check = expected if callable(expected) else (lambda cells: cells == expected)
    last: list[list[str] | None] = [None]

    def condition() -> bool:
        last[0] = cell_texts(page)
        return last[0] is not None and check(last[0])

    wait_until(condition, timeout=timeout,
               message=lambda: f"cells are {last[0]!r}, expected {expected!r}")
    return last[0] or []


def wait_for_status(page: Any, **expected: str) -> dict[str, str]:
    """Wait until our status item shows ``expected`` (``state="synced", people="2"``)."""
    last: list[dict[str, str]] = [{}]

    def condition() -> bool:
        last[0] = status(page) if page.locator(STATUS).count() else {}
        return all(last[0].get(key) == value for key, value in expected.items())

    wait_until(condition, message=lambda: f"status is {last[0]!r}, expected {expected!r}")
    return last[0]


# --- notebooks ---------------------------------------------------------------------------------

#: The metadata JupyterLab gives a notebook whose user chose "No Kernel": a notebook that has
#: it already is not changed by opening it (the tests start no kernels).
NO_KERNEL = {"kernelspec": {"display_name": "", "name": ""}, "language_info": {"name": ""}}


def write_kernelless_notebook(path: Path, sources: list[str]) -> None:
    """A notebook of code cells without a kernel (JupyterLab asks which kernel otherwise)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = [new_code_cell(source, id=f"cell-{i}") for i, source in enumerate(sources)]
    nbformat.write(new_notebook(cells=cells, metadata=NO_KERNEL), path)


def file_sources(path: Path) -> list[str]:
    """The cells' sources of the notebook file at ``path``."""
    return [cell.source for cell in nbformat.read(path, as_version=4).cells]


# --- users' browsers ------------------------------------------------------------------------


@contextmanager
def signed_in_pages(lab: LabServer, browser: Any, test: str,
                    failed: Callable[[], bool]) -> Iterator[Callable[[str], Any]]:
    """``sign_in(token)``: a page in a new browser context (a user's browser), signed in
    with ``token`` (the login cookie is set; no page is loaded yet); ``sign_in(None)``: one
    signed in to nothing.

    On the way out, if ``failed()``, each page's screenshot and console, and the server's
    log, are saved to :data:`ARTIFACTS_DIR`; then the contexts are closed.
    """
    contexts: list[Any] = []
    pages: list[tuple[str, Any, list[str]]] = []

    def new_page(token: str | None) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(TIMEOUT_MS)
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.origin)
        contexts.append(context)
        if token is not None:
            response = context.request.get(lab.url("api/me", token=token))
            assert response.ok, response.status
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        pages.append((USERS[token] if token else f"nobody{len(pages)}", page, console))
        return page

    try:
        yield new_page
    finally:
        if failed():
            save_artifacts(test, pages, lab)
        for context in contexts:
            context.close()


def save_artifacts(test: str, pages: list[tuple[str, Any, list[str]]], lab: LabServer) -> None:
    """Screenshots and consoles of ``pages`` and the server's log, in :data:`ARTIFACTS_DIR`."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    stem = re.sub(r"[^\w.-]+", "_", test)
    for i, (user, page, console) in enumerate(pages):
        name = f"{stem}-{i}-{user}"
        (ARTIFACTS_DIR / f"{name}-console.txt").write_text("\n".join(console) + "\n")
        try:
            page.screenshot(path=str(ARTIFACTS_DIR / f"{name}.png"), full_page=True)
        except Exception as error:  # a crashed page: keep saving the others
            print(f"no screenshot of page {i} ({user}): {error}")
    (ARTIFACTS_DIR / f"{stem}-jupyterlab.log").write_text(lab.log())
    print(f"screenshots, page consoles and the server log saved in {ARTIFACTS_DIR}")


def no_dialog(page: Any) -> None:
    """Assert that ``page`` shows no dialog."""
    dialogs = page.locator(".jp-Dialog")
    assert dialogs.count() == 0, dialogs.first.inner_text()


def copied_link(page: Any) -> str:
    """What "Copy room link" gave the user: the clipboard after the "copied" toast, or the
    link in the dialog shown where the clipboard is refused."""
    toast = page.locator(".Toastify__toast", has_text="Room link copied")
    dialog_input = page.locator(".jp-Dialog .ydjango-LinkDialog-input")
    toast.or_(dialog_input).first.wait_for()
    if dialog_input.count():
        print("copy room link: the clipboard was refused, the dialog shows the link")
        link = dialog_input.input_value()
        page.locator(".jp-Dialog .jp-Dialog-button").click()
        return link
    return page.evaluate("navigator.clipboard.readText()")
