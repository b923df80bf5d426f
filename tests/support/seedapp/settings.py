"""The embedded settings, with the routes of the seed example."""

from jupyter_ydjango.project.settings import *  # noqa: F403

ROOT_URLCONF = "seedapp.urls"
