"""Formats: how a file's content becomes a document and back, per room type, and the process
pool that does it away from the event loop.

Nothing here imports Django: the conversion worker processes import only this."""
