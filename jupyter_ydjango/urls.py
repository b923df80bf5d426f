"""HTTP routes, where Django projects include them: see :mod:`jupyter_ydjango.project.urls`."""

from jupyter_ydjango.project.urls import (
    api_urlpatterns,
    ops_urlpatterns,
    urlpatterns,
)

__all__ = [
    "api_urlpatterns",
    "ops_urlpatterns",
    "urlpatterns",
]
