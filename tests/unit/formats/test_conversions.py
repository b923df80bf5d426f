"""The import worker: documents built in a process of their own, which never outlives the server
and is replaced when it dies."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import nbformat
import pycrdt
import pytest
from backing_services import children
from django_service import DocServer
from nbformat.v4 import new_code_cell, new_notebook
from notebooks import generated_notebook

from jupyter_ydjango.formats.builtin import FORMATS, FormatError
from jupyter_ydjango.formats.conversions import IMPORT_CLIENT_ID, Converter, build
from jupyter_ydjango.formats.notebook import load_into, notebook_from_doc, read_notebook

pytestmark = pytest.mark.timeout(120)
NOTEBOOK = ("json", "notebook")


def import_workers(pid: int) -> list[int]:
    """The server's children that are multiprocessing workers."""
    found = []
    for child in children(pid):
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    found.append(child)
        except OSError:
            pass
    return found


def wait_until(predicate: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][:1] != "Z"
    except OSError:
        return False


def test_build_in_steps_is_the_one_transaction_load() -> None:
    """The chunks a build hands over make the same items as loading in one transaction."""
    data = nbformat.writes(generated_notebook(1200)).encode()
    built = build(NOTEBOOK, data, "nb.ipynb", "h")
    assert len(built.chunks) > 2
    whole = pycrdt.Doc(client_id=IMPORT_CLIENT_ID)
    load_into(whole, read_notebook(data), path="nb.ipynb", content_hash="h")
    room = pycrdt.Doc()
    for chunk in built.chunks:
        room.apply_update(chunk)
    assert room.get_state() == whole.get_state()
    changes: list[bytes] = []
    room.observe(lambda event: changes.append(event.update))
    room.apply_update(whole.get_update())
    room.apply_update(built.state)
    assert changes == []  # the same items: nothing new
    assert notebook_from_doc(room) == notebook_from_doc(whole)


def process_converter() -> Converter:
    """An converter that builds every file in its worker process, once that is up."""
    converter = Converter(1)
    converter.process_threshold = 0
    converter.warm_up()
    assert wait_until(lambda: converter.ready)
    return converter


async def test_a_worker_that_dies_is_replaced() -> None:
    others = set(import_workers(os.getpid()))  # other tests' converters in this process
    converter = process_converter()
    try:
        data = nbformat.writes(new_notebook(cells=[new_code_cell("x = 1")])).encode()
        first = await converter.build(NOTEBOOK, data, "a.ipynb", "h")
        (worker,) = set(import_workers(os.getpid())) - others
        os.kill(worker, signal.SIGKILL)
        assert wait_until(lambda: not alive(worker))
        again = await converter.build(NOTEBOOK, data, "a.ipynb", "h")
        assert again.state == first.state
        assert worker not in import_workers(os.getpid())
    finally:
        converter.shutdown()


async def test_format_errors_come_back_from_the_worker() -> None:
    converter = process_converter()
    try:
        with pytest.raises(FormatError, match="not valid JSON"):
            await converter.build(NOTEBOOK, b"{nope", "bad.ipynb", "h")
    finally:
        converter.shutdown()


async def test_a_save_rendered_in_the_worker_is_the_files_bytes() -> None:
    """The worker writes what Jupyter writes for the document's dump, and refuses an invalid
    document."""
    nb = generated_notebook(300)
    data = nbformat.writes(nb).encode()
    doc = pycrdt.Doc()
    load_into(doc, read_notebook(data))
    dump = FORMATS[NOTEBOOK].dump(doc)
    converter = process_converter()
    try:
        assert await converter.render(NOTEBOOK, dump) == FORMATS[NOTEBOOK].render_dump(dump)
        assert read_notebook(await converter.render(NOTEBOOK, dump)) == read_notebook(data)
        with doc.transaction():
            doc.get("cells", type=pycrdt.Array)[0]["cell_type"] = "no such type"
        with pytest.raises(FormatError, match="Invalid notebook"):
            await converter.render(NOTEBOOK, FORMATS[NOTEBOOK].dump(doc))
    finally:
        converter.shutdown()


@pytest.mark.parametrize("stop", ["sigkill", "sigterm"])
async def test_the_worker_never_outlives_the_server(tmp_path: Path, stop: str) -> None:
    """The worker starts with the second big conversion within a minute (the first one
    alone is converted in a thread) and ends with its server."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("big.ipynb", "big2.ipynb"):
        nbformat.write(generated_notebook(5000), root / name)  # > the process threshold
        assert (root / name).stat().st_size > Converter.process_threshold
    server = DocServer(tmp_path, root)
    pid = server.server.proc.pid
    client = await server.open("big.ipynb")
    await client.close()
    assert import_workers(pid) == [], "no worker for one big conversion"
    client = await server.open("big2.ipynb")
    await client.close()
    workers = wait_until(lambda: import_workers(pid))
    assert workers, "big conversions that recur start the worker"
    if stop == "sigkill":
        server.kill()
    else:
        server.stop()
    assert wait_until(lambda: not any(alive(w) for w in workers), timeout=10), workers


async def test_a_big_conversion_that_would_stall_others_waits_for_a_worker() -> None:
    """Alone, a big conversion runs in a thread and starts no worker; with people in other
    rooms (whose edits a thread would stall), it starts the worker and runs there."""
    others = set(import_workers(os.getpid()))
    data = nbformat.writes(generated_notebook(300)).encode()
    alone = Converter(1)
    alone.process_threshold = 0
    waiting = Converter(1)
    waiting.process_threshold = 0
    try:
        await alone.build(NOTEBOOK, data, "a.ipynb", "h")
        assert not alone.ready and set(import_workers(os.getpid())) <= others
        built = await waiting.build(NOTEBOOK, data, "a.ipynb", "h", others_waiting=True)
        assert waiting.ready  # it waited for the worker, and ran there
        assert set(import_workers(os.getpid())) - others
        again = await alone.build(NOTEBOOK, data, "a.ipynb", "h")
        docs = [pycrdt.Doc(), pycrdt.Doc()]
        for doc, state in zip(docs, (built.state, again.state), strict=True):
            doc.apply_update(state)
        assert docs[0].get_state() == docs[1].get_state()  # the same items
        assert notebook_from_doc(docs[0]) == notebook_from_doc(docs[1])
    finally:
        alone.shutdown()
        waiting.shutdown()


async def test_an_idle_worker_stops_and_starts_again() -> None:
    converter = process_converter()
    converter.idle_timeout = 0.5
    try:
        others = set(import_workers(os.getpid()))
        converter._stop_when_idle()
        assert wait_until(lambda: not converter.ready and set(import_workers(os.getpid()))
                          <= others, timeout=10)
        converter.idle_timeout = 60
        data = nbformat.writes(generated_notebook(5000)).encode()
        assert len(data) > converter.process_threshold
        built = await converter.build(NOTEBOOK, data, "a.ipynb", "h")  # in a thread
        assert built.chunks
        assert not converter.ready  # one big conversion alone starts no worker
        built = await converter.build(NOTEBOOK, data, "a.ipynb", "h")  # in a thread too
        assert wait_until(lambda: converter.ready)  # started again for the next ones
    finally:
        converter.shutdown()
