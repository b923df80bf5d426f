"""HTTP routes of the seed example: push a change from synchronous code, report observations."""

from __future__ import annotations

import base64
import random

import pycrdt
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from .consumers_pycrdt import send_doc_update
from .records import MADE, OBSERVED


@csrf_exempt
def push(request: HttpRequest, room: str) -> JsonResponse:
    """``POST /push/<room>``: insert the body into the text ``t`` of the live room.

    The update comes from a fresh pycrdt document (an independent client), so it applies
    cleanly whatever the room already holds. Its client id is pycrdt's (53 bits wide), or with
    ``?client_id_bits=32`` one drawn from 32 bits as yjs draws them: a room on a y-py document
    holds no wider id, and the seed's ``doc_update`` applies the update unchecked.
    """
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    client_id = None
    if request.GET.get("client_id_bits") == "32":
        client_id = random.getrandbits(32)
    doc = pycrdt.Doc(client_id=client_id)
    text = doc.get("t", type=pycrdt.Text)
    with doc.transaction():
        text += request.body.decode()
    update = doc.get_update()
    send_doc_update(room, update)
    return JsonResponse({"room": room, "update_size": len(update), "client_id": doc.client_id})


def observed(request: HttpRequest) -> JsonResponse:
    """``GET /observed``: ``make_ydoc`` calls per room and the updates the observer saw."""
    return JsonResponse({
        "made": dict(MADE),
        "updates": [
            {"room": room, "size": len(update), "update": base64.b64encode(update).decode()}
            for room, update in list(OBSERVED)
        ],
    })


urlpatterns = [
    path("push/<str:room>", push),
    path("observed", observed),
]
