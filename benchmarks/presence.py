"""Presence: how soon the stock collaborators panel lists the people in a notebook.

The scenarios of ``tests/browser/test_browser_presence.py``, in real Chromium (Debian's) with
JupyterLab's stock frontend, against ``jupyter lab`` with jupyter_ydjango and against
``jupyter lab`` with jupyter-collaboration 5.0 (``benchmarks/.venv-jc``, made on first use),
in the same run. Two users, each in a browser context of their own:

* newcomer: A sits idle with the notebook open for 5 s; B opens it, then opens the panel:
  seconds until B's panel lists A;
* first: A has the panel open; B opens the notebook: seconds until A's panel lists B, then
  B leaves: seconds until A's panel no longer does;
* reload: both in, both panels open; B reloads: seconds until A lists B again, and B A;
* sleep: A's awareness websocket is cut and kept cut for 31 s (a laptop asleep, longer
  than y-websocket's 30 s watchdog), then let through: seconds until B lists A again.

Each wait is capped (``--cap``, 30 s): a person not listed by then counts as never. The
goal is 2 s (what the tests require of jupyter_ydjango; the sleep case allows y-websocket's
2.5 s reconnection backoff on top).

    python benchmarks/presence.py [--trials 3] [--cap 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT / "benchmarks")]

from benchlib import table, write_json  # noqa: E402
from browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    TOKEN,
    WRITER_TOKEN,
    LabServer,
    open_notebook,
    write_kernelless_notebook,
)
from compare import THEM, US, ensure_jc_venv, jc_python  # noqa: E402
from test_browser_presence import (  # noqa: E402
    COLLABORATOR,
    IDLE,
    SLEEP,
    SLEEPABLE_SOCKETS_JS,
    name_of,
    open_panel,
)

RESULTS_JSON = ROOT / "benchmarks" / "results" / "presence.json"
#: Seconds within which someone must be listed (the sleep case: plus y-websocket's backoff).
GOAL = {"newcomer": 2.0, "first": 2.0, "left": 2.0, "reload": 2.0, "sleep": 4.5}
SCENARIOS = ("newcomer", "first", "reload", "sleep")


def wait_listed(page: Any, name: str, cap: float, present: bool = True) -> float | None:
    """Seconds until ``page``'s panel lists ``name`` (or, ``present`` false, no longer
    does); ``None`` if not within ``cap`` seconds."""
    start = time.monotonic()
    state = "attached" if present else "detached"
    try:
        page.locator(COLLABORATOR, has_text=name).first.wait_for(state=state,
                                                                  timeout=cap * 1000)
    except Exception:  # playwright's TimeoutError
        return None
    return time.monotonic() - start


def newcomer(lab: LabServer, alice: Any, bob: Any, cap: float) -> dict[str, float | None]:
    open_notebook(alice, lab.notebook_url("people.ipynb"))
    time.sleep(IDLE)
    open_notebook(bob, lab.notebook_url("people.ipynb"))
    open_panel(bob)
    return {"newcomer": wait_listed(bob, name_of(alice), cap)}


def first(lab: LabServer, alice: Any, bob: Any, cap: float) -> dict[str, float | None]:
    open_notebook(alice, lab.notebook_url("people.ipynb"))
    open_panel(alice)
    time.sleep(IDLE)
    open_notebook(bob, lab.notebook_url("people.ipynb"))
    name = name_of(bob)
    listed = wait_listed(alice, name, cap)
    bob.close()
    return {"first": listed, "left": wait_listed(alice, name, cap, present=False)}


def both_in(lab: LabServer, alice: Any, bob: Any) -> None:
    """Both users have the notebook and their collaborators panel open."""
    open_notebook(alice, lab.notebook_url("people.ipynb"))
    open_notebook(bob, lab.notebook_url("people.ipynb"))
    open_panel(alice)
    open_panel(bob)


def reload(lab: LabServer, alice: Any, bob: Any, cap: float) -> dict[str, float | None]:
    both_in(lab, alice, bob)
    name = name_of(bob)
    wait_listed(alice, name, cap)
    open_notebook(bob, bob.url)
    if not bob.locator(".jp-CollaboratorsPanel").is_visible():
        open_panel(bob)
    seen = [wait_listed(alice, name, cap), wait_listed(bob, name_of(alice), cap)]
    return {"reload": None if None in seen else max(s for s in seen if s is not None)}


def sleep(lab: LabServer, alice: Any, bob: Any, cap: float) -> dict[str, float | None]:
    alice.add_init_script(SLEEPABLE_SOCKETS_JS)
    both_in(lab, alice, bob)
    name = name_of(alice)
    wait_listed(bob, name, cap)
    alice.evaluate("window.__sleep(true)")
    wait_listed(bob, name, cap, present=False)
    time.sleep(SLEEP)
    alice.evaluate("window.__sleep(false)")
    return {"sleep": wait_listed(bob, name, cap)}


TRIALS: dict[str, Callable[..., dict[str, float | None]]] = {
    "newcomer": newcomer, "first": first, "reload": reload, "sleep": sleep}


def start_lab(kind: str, tmp: Path) -> LabServer:
    root = tmp / kind / "root"
    root.mkdir(parents=True)
    write_kernelless_notebook(root / "people.ipynb", ["p = 1"])
    args = ["--LabApp.expose_app_in_browser=True"]
    if kind == THEM:  # its stores in its own directory, not in the working directory
        args += [f"--SQLiteYStore.db_path={tmp / kind / 'ystore.db'}",
                 f"--YDocExtension.session_store_path={tmp / kind / 'sessions.json'}"]
        return LabServer(tmp / kind, root, args=tuple(args), python=str(jc_python()),
                         extension=False)
    return LabServer(tmp / kind, root, args=tuple(args))


def run(browser: Any, kind: str, tmp: Path, trials: int, cap: float) -> dict[str, list]:
    lab = start_lab(kind, tmp)
    results: dict[str, list[float | None]] = {}
    try:
        for scenario in SCENARIOS:
            for n in range(trials):
                pages = []
                for token in (WRITER_TOKEN, TOKEN):
                    context = browser.new_context(viewport={"width": 1280, "height": 800})
                    context.set_default_timeout(TIMEOUT_MS)
                    assert context.request.get(lab.url("api/me", token=token)).ok
                    pages.append(context.new_page())
                try:
                    measured = TRIALS[scenario](lab, *pages, cap)
                except Exception as exc:  # a step that is not a wait failed: say so
                    print(f"{kind} {scenario} trial {n + 1}: {exc}", file=sys.stderr)
                    measured = {scenario: None}
                finally:
                    for page in pages:
                        page.context.close()
                for key, value in measured.items():
                    results.setdefault(key, []).append(value)
                print(f"{kind:22} {scenario:9} trial {n + 1}: {measured}", flush=True)
    finally:
        lab.stop()
    return results


def row(kind: str, key: str, values: list[float | None]) -> list[str]:
    seen = [v for v in values if v is not None]
    within = sum(1 for v in seen if v <= GOAL[key])
    return [key, kind, f"{within}/{len(values)}",
            f"{statistics.median(seen):.2f}" if seen else "-",
            f"{max(seen):.2f}" if seen else "-", str(len(values) - len(seen))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--cap", type=float, default=30.0)
    parser.add_argument("--json", type=Path, default=RESULTS_JSON)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} not found (install Debian's chromium package)")
    versions = ensure_jc_venv()
    from playwright.sync_api import sync_playwright

    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="ydjango-presence-") as tmp, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for kind in (US, THEM):
                results[kind] = run(browser, kind, Path(tmp), args.trials, args.cap)
        finally:
            browser.close()
    keys = [k for k in ("newcomer", "first", "left", "reload", "sleep")
            if any(k in r for r in results.values())]
    print(table(f"Presence in the stock collaborators panel ({args.trials} trials; goal "
                f"{GOAL['newcomer']:.0f} s, sleep {GOAL['sleep']} s; cap {args.cap:.0f} s)",
                ["case", "server", "within goal", "median s", "max s", "never"],
                [row(kind, key, results[kind].get(key, [])) for key in keys
                 for kind in (US, THEM)]))
    write_json(args.json, {"trials": args.trials, "cap": args.cap, "goal": GOAL,
                           "versions": {"jupyter-collaboration": versions}, "results": results})


if __name__ == "__main__":
    main()
