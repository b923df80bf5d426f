"""The start-up heap is kept out of garbage collection, in both kinds of server."""

from __future__ import annotations

import gc
import re
import threading
import time
import weakref

from daphne_servers import Server

from jupyter_ydjango import heap

FROZEN_LINE = re.compile(r"(\d+) start-up objects kept out of garbage collection")


def test_freezing_keeps_live_objects_out_and_still_collects_later_garbage() -> None:
    try:
        line = heap.freeze_startup_heap()
        frozen = gc.get_freeze_count()
        assert frozen > 10_000, "a pytest process holds far more than 10,000 objects"
        assert FROZEN_LINE.search(line).group(1) == str(frozen)

        class Node:
            pass

        later = Node()
        later.cycle = later
        ref = weakref.ref(later)
        del later
        gc.collect()
        assert ref() is None, "garbage made after the freeze must still be collected"
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def wait_for_line(server: Server, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = FROZEN_LINE.search(server.log())
        if found:
            return int(found.group(1))
        time.sleep(0.05)
    raise AssertionError(f"no freeze line in the log:\n{server.log()[-2000:]}")


def test_the_django_service_freezes_its_startup_heap(embedded_server: Server) -> None:
    assert wait_for_line(embedded_server) > 50_000


def test_collector_pauses_are_counted_and_the_last_one_resumes_it() -> None:
    assert gc.isenabled()
    first_in, release_first = threading.Event(), threading.Event()

    def long_conversion() -> None:
        with heap.collector_paused():
            first_in.set()
            release_first.wait(10)

    thread = threading.Thread(target=long_conversion)
    thread.start()
    assert first_in.wait(10)
    assert not gc.isenabled()
    with heap.collector_paused(), heap.collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled(), "the other thread's conversion still runs"
    release_first.set()
    thread.join(10)
    assert gc.isenabled()

    # a collector that was off before stays off
    gc.disable()
    try:
        with heap.collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
    try:
        with heap.collector_paused():
            raise KeyError("a conversion fails")
    except KeyError:
        pass
    assert gc.isenabled()
