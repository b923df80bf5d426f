"""The seed documentation's example consumer, written for pycrdt, on jupyter_ydjango.

The twin of :mod:`.consumers` (the example as the seed writes it, on y-py): the same
consumer, where ``make_ydoc`` returns a :class:`pycrdt.Doc` observed with ``doc.observe``
and ``doc_update`` applies the update with ``self.ydoc.apply_update``. It records what it
sees in :mod:`.records` like its twin.
"""

from __future__ import annotations

import pycrdt
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from jupyter_ydjango.consumer import YjsConsumer
from jupyter_ydjango.protocol.messages import create_update_message

from .records import MADE, OBSERVED


class DocConsumer(YjsConsumer):
    def make_room_name(self) -> str:
        # modify the room name here
        return self.scope["url_route"]["kwargs"]["room"]

    async def make_ydoc(self) -> pycrdt.Doc:
        MADE[self.room_name] = MADE.get(self.room_name, 0) + 1
        doc = pycrdt.Doc()
        # fill the doc with data from the database here
        doc.observe(self.on_update_event)
        return doc

    async def connect(self):
        user = self.scope["user"]
        if user is None or user.is_anonymous:
            await self.close()
            return
        await super().connect()

    def on_update_event(self, event):
        # handle the event here
        OBSERVED.append((self.room_name, event.update))

    async def doc_update(self, update_wrapper):
        update = update_wrapper["update"]
        self.ydoc.apply_update(update)
        await self.group_send_message(create_update_message(update))


def send_doc_update(room_name, update):
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(room_name, {"type": "doc_update", "update": update})
