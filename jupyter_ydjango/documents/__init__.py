"""Documents: rooms bound to a stored document and its file (load, change, store, unload),
forks and timelines of them, and the live documents server-side code reads."""
