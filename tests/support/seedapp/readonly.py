"""A consumer with read-only connections, on the default document (a pycrdt ``Doc``)."""

from __future__ import annotations

from urllib.parse import parse_qs

from jupyter_ydjango.consumer import YjsConsumer


class ReadOnlyConsumer(YjsConsumer):
    """Anyone may connect; ``?mode=read`` makes the connection read-only."""

    async def connect(self):
        query = parse_qs(self.scope["query_string"].decode())
        if query.get("mode") == ["read"]:
            self.read_only = True
        await super().connect()
