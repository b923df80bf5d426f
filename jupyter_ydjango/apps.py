"""The Django app configuration."""

from django.apps import AppConfig


class YDjangoConfig(AppConfig):
    """jupyter_ydjango as a reusable Django app."""

    name = "jupyter_ydjango"
    verbose_name = "Collaborative notebooks"
    default_auto_field = "django.db.models.BigAutoField"
