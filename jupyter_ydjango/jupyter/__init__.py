"""The Jupyter server extension of jupyter-ydjango (see :class:`.app.YDjango`).

Nothing is imported here: the Django side is set up only when the extension is loaded.
"""
