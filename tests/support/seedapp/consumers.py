"""The seed documentation's example consumer, as written there (on y-py), on jupyter_ydjango.

Only the imports differ (``jupyter_ydjango`` instead of ``ypy_websocket``), plus what makes
the example observable from the tests: ``make_ydoc`` counts its calls per room in
:data:`~.records.MADE` and ``on_update_event`` records each change in
:data:`~.records.OBSERVED`.

It needs y-py (the ``[ypy]`` extra, Python < 3.13); :mod:`.consumers_pycrdt` is the same
example written for pycrdt.
"""

from __future__ import annotations

import y_py as Y
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from jupyter_ydjango.consumer import YjsConsumer
from jupyter_ydjango.protocol.messages import create_update_message

from .records import MADE, OBSERVED


class DocConsumer(YjsConsumer):
    def make_room_name(self) -> str:
        # modify the room name here
        return self.scope["url_route"]["kwargs"]["room"]

    async def make_ydoc(self) -> Y.YDoc:
        MADE[self.room_name] = MADE.get(self.room_name, 0) + 1
        doc = Y.YDoc()
        # fill the doc with data from the database here
        doc.observe_after_transaction(self.on_update_event)
        return doc

    async def connect(self):
        user = self.scope["user"]
        if user is None or user.is_anonymous:
            await self.close()
            return
        await super().connect()

    def on_update_event(self, event):
        # handle the event here
        OBSERVED.append((self.room_name, event.get_update()))

    async def doc_update(self, update_wrapper):
        update = update_wrapper["update"]
        Y.apply_update(self.ydoc, update)
        await self.group_send_message(create_update_message(update))


def send_doc_update(room_name, update):
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(room_name, {"type": "doc_update", "update": update})
