"""Our JupyterLab extension: built into the wheel, installed and enabled.

The wheel test builds the extension from ``labextension/`` (``jlpm install`` and a
production build through hatch-jupyter-builder), so it needs node and the npm registry
the first time; it rebuilds ``lib/`` and ``jupyter_ydjango/labextension/`` in place,
exactly as ``pip install .`` does. Where ``YDJANGO_TEST_WHEEL`` names a wheel built from
this tree in the same run (``.ci/run`` builds one first, so that the extension is built once
per run), that wheel is checked instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from daphne_servers import PROJECT_DIR

EXTENSION = "jupyter-ydjango"
LABEXTENSION_DIR = f"share/jupyter/labextensions/{EXTENSION}"
SERVER_CONFIG = "etc/jupyter/jupyter_server_config.d/jupyter_ydjango.json"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """The project's wheel, built from the work tree with ``pip wheel`` (or the one
    ``YDJANGO_TEST_WHEEL`` names)."""
    built = os.environ.get("YDJANGO_TEST_WHEEL")
    if built:
        with zipfile.ZipFile(built) as archive:
            yield archive
        return
    if shutil.which("node") is None:
        pytest.skip("node not available: building the wheel compiles the JupyterLab extension")
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--wheel-dir", str(out)],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    (path,) = out.glob("jupyter_ydjango-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def data_files(archive: zipfile.ZipFile) -> dict[str, str]:
    """The wheel's data files: install path (relative to the prefix) -> archive name."""
    files = {}
    for name in archive.namelist():
        parts = name.split("/", 2)
        if len(parts) == 3 and parts[0].endswith(".data") and parts[1] == "data":
            files[parts[2]] = name
    return files


def read_json(archive: zipfile.ZipFile, name: str) -> dict:
    return json.loads(archive.read(name))


def test_labextension_in_wheel(wheel: zipfile.ZipFile) -> None:
    files = data_files(wheel)

    package = read_json(wheel, files[f"{LABEXTENSION_DIR}/package.json"])
    assert package["name"] == EXTENSION
    load = package["jupyterlab"]["_build"]["load"]
    assert re.fullmatch(r"static/remoteEntry\.[0-9a-f]+\.js", load), load
    assert f"{LABEXTENSION_DIR}/{load}" in files
    assert f"{LABEXTENSION_DIR}/static/style.js" in files
    # The wheel carries a production build: minified, without source maps.
    assert not [path for path in files if path.endswith(".js.map")]

    # The settings schema adds the toolbar button and the context-menu items.
    schema = read_json(wheel, files[f"{LABEXTENSION_DIR}/schemas/{EXTENSION}/plugin.json"])
    toolbar = schema["jupyter.lab.toolbars"]["Notebook"]
    assert [item["command"] for item in toolbar] == ["ydjango:copy-room-link"]
    # One way to share: the top bar's share button is ours (the room link), in place of
    # jupyter-collaboration-ui's server link, whose plugin the extension disables.
    top_bar = schema["jupyter.lab.toolbars"]["TopBar"]
    assert [item["command"] for item in top_bar] == ["collaboration:shared-link"]
    assert package["jupyterlab"]["disabledExtensions"] == [
        "@jupyter/collaboration-extension:shared-link"]
    selectors = {item["selector"] for item in schema["jupyter.lab.menus"]["context"]}
    assert ".jp-Notebook" in selectors

    # install.json makes `jupyter labextension list` name the Python package.
    install = read_json(wheel, files[f"{LABEXTENSION_DIR}/install.json"])
    assert install["packageManager"] == "python"
    assert install["packageName"] == EXTENSION


def test_server_config_in_wheel(wheel: zipfile.ZipFile) -> None:
    config = read_json(wheel, data_files(wheel)[SERVER_CONFIG])
    assert config == {"ServerApp": {"jpserver_extensions": {"jupyter_ydjango": True}}}


def test_labextension_list_shows_it_enabled_and_ok() -> None:
    """The installed extension (editable or wheel) is found, enabled and compatible."""
    jupyter = Path(sys.prefix, "bin", "jupyter")
    proc = subprocess.run(
        [str(jupyter), "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = ANSI_ESCAPE.sub("", proc.stdout + proc.stderr)
    assert proc.returncode == 0, output
    lines = [line.split() for line in output.splitlines()]
    ours = [words for words in lines if words and words[0] == EXTENSION]
    assert len(ours) == 1, output
    words = ours[0]
    assert "enabled" in words and "OK" in words, output
    installed = Path(sys.prefix, LABEXTENSION_DIR)
    assert (installed / "package.json").is_file()
    if not installed.is_symlink():
        # Installed by pip (not linked by `jupyter labextension develop`): install.json
        # names the Python package.
        assert "(python, jupyter-ydjango)" in " ".join(words), output
