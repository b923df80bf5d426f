"""The embedded Django project's settings, where ``DJANGO_SETTINGS_MODULE`` names them: see
:mod:`jupyter_ydjango.settings`."""

from jupyter_ydjango.project.settings import *  # noqa: F403
