"""Memory a server gives back, and objects it keeps out of Python's garbage collector.

A Jupyter server with the Django side set up holds some 220,000 objects once it has started
(modules, classes, Django's and JupyterLab's tables, jsonschema grammars). Every full
collection walks all of them: about 120 ms on a small machine, during which no websocket
frame moves, and busy editing brings one every minute or so. Those objects live as long as
the process, so walking them again and again finds nothing. :func:`freeze_startup_heap`
collects once, then moves what survives to the permanent generation (:func:`gc.freeze`),
which later collections skip; objects made after it are collected as before.

A conversion (:mod:`.conversions`) pauses the collector while it runs (:func:`collector_paused`).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
import time
from collections.abc import Iterator


def release_memory() -> None:
    """Collect garbage, then give the memory freed back to the system (glibc keeps it
    otherwise: tens of megabytes after a big notebook, a few after the migrations); a no-op
    where the C library has no ``malloc_trim``."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def freeze_startup_heap() -> str:
    """Collect the garbage of the start-up and give its memory back, then keep every live
    object out of later collections; a line for the log that says how many objects that was."""
    started = time.perf_counter()
    release_memory()
    gc.freeze()
    took = (time.perf_counter() - started) * 1000
    return (f"{gc.get_freeze_count()} start-up objects kept out of garbage collection "
            f"(collecting and giving memory back took {took:.0f} ms)")


_pause_lock = threading.Lock()
_pauses = 0
_was_enabled = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration (in the whole process; nested and
    concurrent pauses are counted, the last one to end resumes it).

    Reading a notebook makes hundreds of thousands of dicts and lists that stay alive until the
    document is built; every few hundred of them start a collection that walks them all again,
    a third of the time it takes to parse a big notebook. They hold no reference cycles, so a
    paused collector misses nothing: what the conversion leaves is freed by reference counts.
    """
    global _pauses, _was_enabled
    with _pause_lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _was_enabled:
                gc.enable()
