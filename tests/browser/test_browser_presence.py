"""Who is there, in JupyterLab's stock collaborators panel, in real Chromium: a newcomer
where others sit idle, someone who was there first, a reload, a laptop that slept, leaving.

Each case runs three trials. The panel (jupyter-collaboration-ui) builds its list from the
global awareness's ``change`` events, seen only once it has rendered (when first opened);
the tests open it when people do: after joining.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from browser import (
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    open_notebook,
    unavailable,
    write_kernelless_notebook,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

TRIALS = 3
#: Everyone is listed within this many seconds (of joining, or of opening the panel).
LISTED_WITHIN_MS = 2_000
COLLABORATORS_TAB = ".jp-SideBar .lm-TabBar-tab[data-id='jp-collaboration-panel']"
COLLABORATOR = ".jp-CollaboratorsList .jp-Collaborator"
#: Idle time before someone else joins, in seconds.
IDLE = 5.0
#: A laptop's sleep: longer than y-websocket's 30 s watchdog.
SLEEP = 31.0

#: Wrap WebSocket so that the awareness room's connection can be cut, and kept cut, as a
#: laptop's sleep does (``window.__sleep(true)``; ``false`` wakes it: y-websocket's next
#: attempt, within its 2.5 s backoff, connects).
SLEEPABLE_SOCKETS_JS = """
(() => {
    const Native = window.WebSocket;
    const open = [];
    window.__asleep = false;
    window.WebSocket = class extends Native {
        constructor(url, ...rest) {
            const awareness = String(url).includes('globalAwareness');
            super(awareness && window.__asleep ? 'ws://127.0.0.1:9/asleep' : url, ...rest);
            if (awareness) open.push(this);
        }
    };
    window.__sleep = asleep => {
        window.__asleep = asleep;
        if (asleep) open.splice(0).forEach(ws => ws.close());
    };
})();
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabServer]:
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    root.mkdir()
    write_kernelless_notebook(root / "people.ipynb", ["p = 1"])
    server = LabServer(tmp, root, base_url="/jp/",
                       args=("--LabApp.expose_app_in_browser=True",))
    yield server
    server.stop()


def name_of(page: Any) -> str:
    """The display name the page's user has (what others' panels show)."""
    return page.evaluate("window.jupyterapp.serviceManager.user.identity.display_name")


def open_panel(page: Any) -> None:
    page.locator(COLLABORATORS_TAB).click()
    page.locator(".jp-CollaboratorsPanel").wait_for()


def listed(page: Any, name: str, timeout_ms: int = LISTED_WITHIN_MS) -> float:
    """Wait until ``page``'s panel lists ``name``; the seconds it took."""
    start = time.monotonic()
    page.locator(COLLABORATOR, has_text=name).first.wait_for(timeout=timeout_ms)
    return time.monotonic() - start


def gone(page: Any, name: str, timeout_ms: int = LISTED_WITHIN_MS) -> None:
    page.locator(COLLABORATOR, has_text=name).first.wait_for(state="detached",
                                                              timeout=timeout_ms)


def trials(lab: LabServer, sign_in: Callable[[str], Any], trial: Callable[..., None]) -> None:
    for n in range(TRIALS):
        alice, bob = sign_in(WRITER_TOKEN), sign_in(TOKEN)
        try:
            trial(lab, alice, bob)
        except Exception as exc:
            raise AssertionError(f"trial {n + 1} of {TRIALS}: {exc}") from exc
        finally:
            alice.context.close()
            bob.context.close()


def test_a_newcomer_sees_those_sitting_idle(lab: LabServer,
                                           sign_in: Callable[[str], Any]) -> None:
    def trial(lab: LabServer, alice: Any, bob: Any) -> None:
        open_notebook(alice, lab.notebook_url("people.ipynb"))
        time.sleep(IDLE)
        open_notebook(bob, lab.notebook_url("people.ipynb"))
        open_panel(bob)
        print(f"alice listed {listed(bob, 'Writer'):.2f} s after bob opened the panel")

    trials(lab, sign_in, trial)


def test_who_was_there_first_sees_the_newcomer_and_sees_them_leave(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    def trial(lab: LabServer, alice: Any, bob: Any) -> None:
        open_notebook(alice, lab.notebook_url("people.ipynb"))
        open_panel(alice)
        time.sleep(IDLE)
        open_notebook(bob, lab.notebook_url("people.ipynb"))
        name = name_of(bob)
        print(f"bob listed {listed(alice, name):.2f} s after his notebook showed")
        bob.close()
        gone(alice, name)

    trials(lab, sign_in, trial)


def test_someone_who_reloads_is_listed_again(lab: LabServer,
                                            sign_in: Callable[[str], Any]) -> None:
    def trial(lab: LabServer, alice: Any, bob: Any) -> None:
        open_notebook(alice, lab.notebook_url("people.ipynb"))
        open_notebook(bob, lab.notebook_url("people.ipynb"))
        open_panel(alice)
        open_panel(bob)
        name = name_of(bob)
        listed(alice, name)
        listed(bob, "Writer")
        open_notebook(bob, bob.url)  # a reload (past the kernel picker again)
        if not bob.locator(".jp-CollaboratorsPanel").is_visible():
            open_panel(bob)  # the restored layout may have it open already
        listed(alice, name)
        listed(bob, "Writer")
        assert alice.locator(COLLABORATOR, has_text=name).count() == 1

    trials(lab, sign_in, trial)


def test_a_laptop_that_slept_is_listed_again_when_it_wakes(
        lab: LabServer, sign_in: Callable[[str], Any]) -> None:
    def trial(lab: LabServer, alice: Any, bob: Any) -> None:
        alice.add_init_script(SLEEPABLE_SOCKETS_JS)
        open_notebook(alice, lab.notebook_url("people.ipynb"))
        open_notebook(bob, lab.notebook_url("people.ipynb"))
        open_panel(alice)
        open_panel(bob)
        listed(bob, "Writer")
        alice.evaluate("window.__sleep(true)")
        gone(bob, "Writer")  # her connection closed: the server removed her
        time.sleep(SLEEP)
        alice.evaluate("window.__sleep(false)")
        # y-websocket tries again within its 2.5 s backoff; then she is listed at once
        listed(bob, "Writer", timeout_ms=2_500 + LISTED_WITHIN_MS)
        listed(alice, name_of(bob), timeout_ms=2_500 + LISTED_WITHIN_MS)

    trials(lab, sign_in, trial)
