"""HTTP routes of the seed example: push a change from synchronous code, report observations."""

from __future__ import annotations

import base64

import y_py as Y
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from .consumers import MADE, OBSERVED, send_doc_update


@csrf_exempt
def push(request: HttpRequest, room: str) -> JsonResponse:
    """``POST /push/<room>``: insert the body into the text ``t`` of the live room.

    The update comes from a fresh document (an independent client), so it applies cleanly
    whatever the room already holds.
    """
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    doc = Y.YDoc()
    text = doc.get_text("t")
    with doc.begin_transaction() as txn:
        text.extend(txn, request.body.decode())
    update = Y.encode_state_as_update(doc)
    send_doc_update(room, update)
    return JsonResponse({"room": room, "update_size": len(update)})


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
