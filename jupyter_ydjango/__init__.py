"""jupyter-ydjango: a collaborative-notebook backend for JupyterLab on Django Channels."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """The Jupyter server extension (imported only when the server loads it)."""
    from jupyter_ydjango.jupyter.app import YDjango

    return [{"module": "jupyter_ydjango", "app": YDjango}]


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Our JupyterLab extension, built into ``labextension/`` (for ``jupyter labextension
    develop``; installs get it as data files in ``share/jupyter/labextensions``)."""
    return [{"src": "labextension", "dest": "jupyter-ydjango"}]
