"""A tiny Django project for the tests: the seed documentation's ``DocConsumer`` example.

Served by daphne (``seedapp.asgi:application``, ``DJANGO_SETTINGS_MODULE=seedapp.settings``)
with ``tests/`` on ``PYTHONPATH``.
"""
