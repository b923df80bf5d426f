"""Websocket routes, for inclusion in a Django project's ASGI router."""

from django.urls import path, re_path

from jupyter_ydjango.api.consumers import (
    AwarenessConsumer,
    DocumentConsumer,
    ForkConsumer,
    RoomConsumer,
)

websocket_urlpatterns = [
    # JupyterLab's collaborative documents: {format}:{type}:{fileId}
    re_path(r"^api/collaboration/room/(?P<room_id>[^/:]+:[^/:]+:[^/]+)$",
            DocumentConsumer.as_asgi()),
    # forks and timelines' copies: 32 hex digits
    re_path(r"^api/collaboration/room/(?P<room_id>[0-9a-f]{32})$", ForkConsumer.as_asgi()),
    # awareness-only rooms such as JupyterLab:globalAwareness
    re_path(r"^api/collaboration/room/(?P<room_id>[^/]+)$", AwarenessConsumer.as_asgi()),
    # plain y-websocket rooms
    path("ws/<str:room>", RoomConsumer.as_asgi()),
]
