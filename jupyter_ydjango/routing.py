"""Websocket routes, for inclusion in a Django project's ASGI router."""

from django.urls import path

from .consumer import RoomConsumer

websocket_urlpatterns = [
    path("ws/<str:room>", RoomConsumer.as_asgi()),
]
