"""jupyter-ydjango: a collaborative-notebook backend for JupyterLab on Django Channels."""

__version__ = "0.1.0"
