"""The embedded Django project: its settings, ASGI application, URLs, and the worker processes
of ``serve --workers N``."""
