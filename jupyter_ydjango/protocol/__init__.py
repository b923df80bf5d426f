"""The wire: the y-websocket protocol as pure functions, the CRDT engines, the close codes.

Nothing here imports another part of the package."""
