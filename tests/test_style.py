"""The code base is ruff-clean (configuration in pyproject.toml)."""

import shutil
import subprocess
import sys

from servers import PROJECT_DIR


def test_ruff_clean():
    ruff = shutil.which("ruff") or f"{sys.prefix}/bin/ruff"
    result = subprocess.run([ruff, "check", "."], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
