"""Role links in JupyterLab, in real Chromium: the owner makes a view-only link to one notebook
in the share dialog; someone with no token opens it in a browser of their own, follows the
notebook live and read-only, and reaches nothing else of the server; the owner revokes the
link and the guest is disconnected and told.

One ``jupyter lab`` with the guests' identity provider and the roles authorizer; the owner
logs in with the server's token, as a user of the stock login does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import (
    TOKEN,
    LabServer,
    cell_texts,
    edit_cell_end,
    open_notebook,
    unavailable,
    wait_for_cells,
)
from nbformat import write
from nbformat.v4 import new_code_cell, new_notebook

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

PANEL = ".jp-NotebookPanel"
READ_ONLY = ".jp-NotebookPanel.ydjango-mod-readOnly"
SHARE_BUTTON = "#jp-top-bar [data-command='collaboration:shared-link']"
#: The longest the revocation may take to reach the guest's page.
REVOKED_WITHIN = 1.0


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("links-lab")
    root = tmp / "root"
    root.mkdir()
    for name, source in (("lecture.ipynb", "x = 1"), ("solutions.ipynb", "answer = 42")):
        write(new_notebook(cells=[new_code_cell(source, id="cell-0")]), root / name)
    server = LabServer(
        tmp, root, base_url="/jp/",
        authorizer="jupyter_ydjango.jupyter.authorizer.RolesAuthorizer",
        identity_provider="jupyter_ydjango.jupyter.guests.GuestIdentityProvider",
        args=("--RolesAuthorizer.cache_seconds=0",))
    yield server
    server.stop()


def status_of(page: Any, method: str, path: str) -> int:
    """The status of a request from ``page``'s browser, with its cookies and the XSRF token
    JupyterLab's own requests carry, past the browser's cache."""
    return page.evaluate("""async ([method, url]) => {
        const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '';
        // (no-store: a GET answered before would be served again from the browser's cache)
        const init = {method, cache: 'no-store',
                      headers: {'X-XSRFToken': decodeURIComponent(xsrf)}};
        if (method !== 'GET') {
            init.body = '{}';
            init.headers['Content-Type'] = 'application/json';
        }
        return (await fetch(url, init)).status;
    }""", [method, path])


def test_a_view_only_link_made_in_the_share_dialog(
        lab: LabServer, sign_in: Callable[[str | None], Any]) -> None:
    owner = sign_in(TOKEN)
    open_notebook(owner, lab.notebook_url("lecture.ipynb"))

    # The owner makes a viewer link (the dialog's default role) in the share dialog.
    owner.locator(SHARE_BUTTON).click()
    dialog = owner.locator(".jp-Dialog .ydjango-ShareDialog")
    dialog.locator(".ydjango-ShareDialog-make").click()
    made = dialog.locator(".ydjango-ShareDialog-madeLink")
    made.wait_for()
    link = made.input_value()
    assert link.startswith(lab.url("ydjango/join/")), link
    assert TOKEN not in link
    dialog.locator("[data-link] >> text=/viewer, until/").wait_for()
    owner.keyboard.press("Escape")

    # Someone with no token opens it in a browser of their own: the notebook, view only.
    guest = sign_in(None)
    guest.goto(link)
    guest.locator(f"{READ_ONLY} .ydjango-ReadOnlyLabel >> text=View only").wait_for()
    wait_for_cells(guest, ["x = 1"])
    # the file browser lists the notebook only
    guest.locator(".jp-DirListing-item[title*='lecture.ipynb']").first.wait_for()
    assert guest.locator(".jp-DirListing-item[title*='solutions.ipynb']").count() == 0
    assert "/lab/tree/lecture.ipynb" in guest.url, guest.url
    assert TOKEN not in guest.content()
    name = guest.evaluate("async url => (await (await fetch(url)).json()).identity.name",
                          lab.url("api/me"))
    assert name.startswith("Guest "), name
    edit_cell_end(guest, 0)
    guest.keyboard.type(" # guest")
    assert cell_texts(guest) == ["x = 1"]

    # ... and nothing else of the server.
    assert status_of(guest, "GET", lab.url("api/contents/lecture.ipynb")) == 200
    for method, path in (("GET", "api/contents/solutions.ipynb"),
                         ("GET", "files/solutions.ipynb"),
                         ("GET", "api/terminals"), ("POST", "api/terminals"),
                         ("POST", "api/kernels"),
                         ("PUT", "api/contents/lecture.ipynb")):
        assert status_of(guest, method, lab.url(path)) == 403, (method, path)

    # No kernel was asked for (a viewer may not run one): no error, no kernel picker.
    assert guest.locator(".jp-KernelName >> text=No Kernel").count() == 1
    assert guest.locator(".jp-Dialog").count() == 0
    assert "api/sessions" not in "".join(
        line for line in lab.log().splitlines() if "guest-" in line), "a session was asked for"

    # The owner's edits reach the guest live.
    edit_cell_end(owner, 0)
    owner.keyboard.type(" # owner")
    wait_for_cells(guest, ["x = 1 # owner"])
    owner.keyboard.press("Escape")

    # Revoked in the dialog: the guest is told within a second, and let in no more.
    owner.locator(SHARE_BUTTON).click()
    revoke = dialog.locator("[data-link] .ydjango-ShareDialog-revoke")
    revoke.wait_for()
    since = time.monotonic()
    revoke.click()
    guest.locator(".Toastify__toast >> text=/access to lecture.ipynb was revoked/").wait_for()
    delay = time.monotonic() - since
    print(f"revocation: shown {delay:.3f} s after the owner's click")
    assert delay < REVOKED_WITHIN, f"the revocation took {delay:.3f} s"
    assert guest.locator(f"{PANEL}.ydjango-mod-revoked").count() == 1
    assert status_of(guest, "GET", lab.url("api/contents/lecture.ipynb")) == 403
    again = sign_in(None)
    response = again.goto(link)
    assert response is not None and response.status == 410, response
