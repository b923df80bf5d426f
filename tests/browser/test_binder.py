"""The Binder environment, built and tried by ``binder/check`` (see that script).

It builds a fresh venv the way repo2docker builds the image (minutes, and downloads), so it
runs only when asked: ``YDJANGO_BINDER_CHECK=1 pytest -m binder``. ``.ci/run`` also sets
``YDJANGO_BINDER_LABEXTENSION`` to the extension it built from the same tree, which the
check packs instead of building it again.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from browser import unavailable
from daphne_servers import PROJECT_DIR

pytestmark = [
    pytest.mark.binder,
    pytest.mark.skipif(
        os.environ.get("YDJANGO_BINDER_CHECK") != "1",
        reason="builds the Binder environment in a fresh venv and takes minutes: set "
               "YDJANGO_BINDER_CHECK=1 to run it (or run binder/check)",
    ),
]


@pytest.mark.timeout(1800)
def test_binder_check() -> None:
    """binder/check passes: repo2docker's steps in a fresh venv, then the server is tried
    (in Chromium too, where the browser tests can run)."""
    command = [sys.executable, str(PROJECT_DIR / "binder" / "check")]
    built = os.environ.get("YDJANGO_BINDER_LABEXTENSION")
    if built:
        command += ["--labextension", built]
    no_browser = unavailable()
    if no_browser:
        command.append("--skip-browser")
        print(f"binder/check --skip-browser: {no_browser}")
    result = subprocess.run(
        command,
        cwd=PROJECT_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=1750,
    )
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-6000:]
