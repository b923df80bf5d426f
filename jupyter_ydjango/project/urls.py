"""HTTP routes: the API the Jupyter server proxies, and the admin of the embedded project."""

from django.contrib import admin
from django.urls import path

#: The API routes, for inclusion in a Django project's URLconf.
from jupyter_ydjango.api import history_views, links, roles, views

api_urlpatterns = [
    path("api/collaboration/session/<path:path>", views.session, name="ydjango-session"),
    path("api/ydjango/rooms/<str:file_id>", views.room_status, name="ydjango-room-status"),
    path("api/ydjango/rename", views.rename, name="ydjango-rename"),
    path("api/ydjango/delete", views.delete, name="ydjango-delete"),
    path("api/collaboration/timeline/<path:path>", history_views.timeline_view,
         name="ydjango-timeline"),
    path("api/ydjango/history/<path:path>", history_views.authors_view,
         name="ydjango-history-authors"),
    path("api/collaboration/undo_redo/<str:room_id>", history_views.undo_redo,
         name="ydjango-undo-redo"),
    path("api/collaboration/fork/<str:room_id>", history_views.fork, name="ydjango-fork"),
    path("api/ydjango/roles/", roles.roles_view, {"path": ""}, name="ydjango-roles-root"),
    path("api/ydjango/roles/<path:path>", roles.roles_view, name="ydjango-roles"),
    path("api/ydjango/access/", roles.access_view, {"path": ""}, name="ydjango-access-root"),
    path("api/ydjango/access/<path:path>", roles.access_view, name="ydjango-access"),
    path("api/ydjango/links/", links.links_view, {"path": ""}, name="ydjango-links-root"),
    path("api/ydjango/links/<path:path>", links.links_view, name="ydjango-links"),
    path("api/ydjango/join", links.join_view, name="ydjango-join"),
]

#: Operations: health check and Prometheus metrics (expose them to your monitoring only).
ops_urlpatterns = [
    path("healthz", views.health, name="ydjango-health"),
    path("metrics", views.prometheus, name="ydjango-metrics"),
]

urlpatterns = [
    *api_urlpatterns,
    *ops_urlpatterns,
    path("admin/", admin.site.urls),
]
