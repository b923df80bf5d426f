"""Documents: opening, encoding and saving a large notebook; the update log's size.

Part 1 (in this process, the room's own code paths, each the median of ``--runs`` runs):
  load a generated notebook with outputs from its file into a room's document, encode the
  whole state for a joining client, and save it back (read the doc, validate, write).
Part 2 (a real ``python -m jupyter_ydjango serve`` on SQLite, a pycrdt client): cold open
  through the session API and the websocket, then database rows and bytes for 1,000
  keystrokes, before and after compaction.

    python benchmarks/documents.py [--cells 1000] [--runs 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT)]
os.environ.setdefault("YDJANGO_DATA_DIR", tempfile.mkdtemp(prefix="ydjango-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jupyter_ydjango.settings")

import django  # noqa: E402

django.setup()

import nbformat  # noqa: E402
import pycrdt  # noqa: E402
from django_service import DocServer  # noqa: E402
from notebooks import generated_notebook  # noqa: E402

from jupyter_ydjango.formats.builtin import NotebookFormat  # noqa: E402
from jupyter_ydjango.store.disk import read_file, write_file_atomic  # noqa: E402


def median_ms(samples: list[float]) -> str:
    med = statistics.median(samples) * 1000
    spread = (max(samples) - min(samples)) * 1000
    return f"{med:8.1f} ms  (±{spread / 2:.1f})"


def in_process(path: Path, runs: int) -> dict[str, list[float]]:
    fmt = NotebookFormat()
    times: dict[str, list[float]] = {k: [] for k in (
        "read + parse + validate file", "import into the doc", "encode full state (joiner)",
        "open total", "read doc -> notebook", "validate + serialise", "atomic write",
        "save total")}
    for _ in range(runs):
        t0 = time.perf_counter()
        file = read_file(path)
        content = fmt.parse(file.data)
        t1 = time.perf_counter()
        imported = pycrdt.Doc(client_id=0)
        fmt.load_into(imported, content, path.name, file.hash)
        room = pycrdt.Doc()
        room.apply_update(imported.get_update())
        t2 = time.perf_counter()
        state = room.get_update()
        t3 = time.perf_counter()
        nb = fmt.read(room)
        t4 = time.perf_counter()
        data = fmt.render(nb)
        t5 = time.perf_counter()
        write_file_atomic(path.with_name("saved.ipynb"), data)
        t6 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0, t4 - t3, t5 - t4,
                                      t6 - t5, t6 - t3), strict=True):
            times[key].append(value)
    times["_state_bytes"] = [len(state)]
    return times


async def over_the_wire(tmp: Path, cells: int, keystrokes: int) -> dict[str, object]:
    root = tmp / "root"
    root.mkdir()
    nb = generated_notebook(cells)
    (root / "big.ipynb").write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    (root / "typing.ipynb").write_text(nbformat.writes(generated_notebook(10)) + "\n")
    server = DocServer(tmp, root, YDJANGO_COMPACT_AFTER="100000", YDJANGO_COMPACT_IDLE="3",
                       YDJANGO_SAVE_DELAY="1", YDJANGO_LOG_LEVEL="WARNING")
    try:
        t0 = time.perf_counter()
        client = await server.open("big.ipynb")
        cold = time.perf_counter() - t0
        assert len(client.model.ycells) == cells
        t0 = time.perf_counter()
        warm_client = await server.open("big.ipynb")
        warm = time.perf_counter() - t0
        await client.close()
        await warm_client.close()

        typing = await server.open("typing.ipynb")
        file_id = server.session("typing.ipynb")["fileId"]
        source = typing.model.ycells[0]["source"]
        for i in range(keystrokes):
            source.insert(len(source), "abcdefghij"[i % 10])
            if i % 5 == 4:
                await typing.flush()  # ~ a fast typist: the server sees small batches
        await typing.flush()
        await asyncio.sleep(1.0)
        from test_documents import db_rows

        before = db_rows(server, file_id)
        deadline = time.monotonic() + 30
        while db_rows(server, file_id)["update"][0] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        after = db_rows(server, file_id)
        await typing.close()
        return {"cold_open_s": cold, "warm_open_s": warm, "before": before, "after": after}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keystrokes", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/documents.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ydjango-bench-") as tmp_name:
        tmp = Path(tmp_name)
        path = tmp / "nb.ipynb"
        path.write_text(nbformat.writes(generated_notebook(args.cells)) + "\n")
        size = path.stat().st_size
        times = in_process(path, args.runs)
        wire = asyncio.run(over_the_wire(tmp, args.cells, args.keystrokes))
    lines = [f"Notebook: {args.cells} cells, {size / 1e6:.2f} MB on disk "
             f"(code cells with stream/HTML outputs, a PNG every 10th cell); "
             f"median of {args.runs} runs (± half the range)", ""]
    lines.append("In process (the room's code paths):")
    for key, samples in times.items():
        if not key.startswith("_"):
            lines.append(f"  {key:32s} {median_ms(samples)}")
    lines.append(f"  {'full state size':32s} {times['_state_bytes'][0] / 1e6:8.2f} MB")
    lines += ["", "Over the wire (daphne + SQLite, pycrdt client, one run):",
              f"  {'cold open (session PUT -> synced)':32s} {wire['cold_open_s'] * 1000:8.1f} ms",
              f"  {'warm open (room loaded)':32s} {wire['warm_open_s'] * 1000:8.1f} ms", "",
              f"Update log for {args.keystrokes} keystrokes (one character each, "
              f"client flushing every 5):",
              f"  {'':18s} {'update rows':>12s} {'update bytes':>13s} {'snapshots':>10s} "
              f"{'snapshot bytes':>15s}"]
    for label, rows in (("before compaction", wire["before"]), ("after compaction",
                                                                wire["after"])):
        lines.append(f"  {label:18s} {rows['update'][0]:12d} {rows['update'][1]:13d} "
                     f"{rows['snapshot'][0]:10d} {rows['snapshot'][1]:15d}")
    report = "\n".join(lines)
    print(report)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"report": report, "times": times, "wire": wire},
                                    indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
