"""History growth: what a compaction and a timeline cost as a document's history grows.

A notebook whose history holds N points (snapshots an hour apart, each a small edit, as a
term of daily teaching leaves). For each N: the first compaction (it builds the document's
checkpoint from every snapshot, once), then, after a burst of typing (20 update rows), the
rows a compaction reads and its time, then the rows and time of opening the timeline (the
points, their authors and the document at the last point). Rows are counted by kind: rows
holding Yjs updates (a snapshot's state, a log row's data, the checkpoint) and rows that
hold only a point's time, reason and authors. In this process, on SQLite, the library's own
functions.

    python benchmarks/history_growth.py [--points 100,500,1000,2000,5000] [--json PATH]
            [--plot PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "support"), str(ROOT)]
os.environ.setdefault("YDJANGO_DATA_DIR", tempfile.mkdtemp(prefix="ydjango-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jupyter_ydjango.settings")

import django  # noqa: E402

django.setup()

import pycrdt  # noqa: E402
from benchlib import table, write_json  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models.sql.compiler import SQLCompiler  # noqa: E402
from django.utils import timezone  # noqa: E402
from nbformat.v4 import new_code_cell, new_notebook  # noqa: E402

from jupyter_ydjango.documents.timeline import read_timeline  # noqa: E402
from jupyter_ydjango.formats.builtin import FORMATS  # noqa: E402
from jupyter_ydjango.models import Document, Snapshot, Update  # noqa: E402
from jupyter_ydjango.store import history, records, update_log  # noqa: E402

NOTEBOOK = FORMATS[("json", "notebook")]
TABLES = {Snapshot._meta.db_table, Update._meta.db_table, Document._meta.db_table}
#: The columns that hold Yjs updates.
UPDATES = {"state", "data", "checkpoint"}


@contextmanager
def rows_read() -> Iterator[Counter[str]]:
    """Count the history rows that queries return: ``updates`` (rows with Yjs updates) and
    ``points`` (rows of snapshots without their state)."""
    counts: Counter[str] = Counter()
    original = SQLCompiler.results_iter

    def counting(self: SQLCompiler, *args: Any, **kwargs: Any) -> Any:
        table = self.query.get_meta().db_table
        columns = set(self.query.values_select)
        kind = ("updates" if columns & UPDATES else
                "points" if table == Snapshot._meta.db_table and columns else None)
        for row in original(self, *args, **kwargs):
            if table in TABLES and kind:
                counts[kind] += 1
            yield row

    SQLCompiler.results_iter = counting  # type: ignore[method-assign]
    try:
        yield counts
    finally:
        SQLCompiler.results_iter = original  # type: ignore[method-assign]


def seed(points: int) -> Document:
    """A notebook document with ``points`` snapshots an hour apart, then 20 update rows."""
    document = Document.objects.create(path=records.file_location(f"growth-{points}.ipynb"))
    doc = pycrdt.Doc(client_id=1)
    NOTEBOOK.load_into(doc, new_notebook(cells=[new_code_cell("x = 0", id=f"c{i}")
                                                for i in range(10)]), "g.ipynb", "0" * 64)
    start = timezone.now() - timedelta(hours=points + 1)
    snapshots = [Snapshot(document=document, reason="import", created=start,
                          state=doc.get_update())]
    source = doc.get("cells", type=pycrdt.Array)
    for n in range(1, points):
        before = doc.get_state()
        text = source[n % 10]["source"]
        text.insert(len(text), "+1")
        snapshots.append(Snapshot(document=document, reason="edit",
                                  created=start + timedelta(hours=n),
                                  state=doc.get_update(before), authors=["teacher"]))
    Snapshot.objects.bulk_create(snapshots, batch_size=500)
    Document.objects.filter(pk=document.pk).update(imported=True)
    rows = []
    for _ in range(20):
        before = doc.get_state()
        text = source[0]["source"]
        text.insert(len(text), "a")
        data = update_log.pack_updates([doc.get_update(before)])
        rows.append(Update(document=document, data=data,
                           count=1, authors=["student"]))
    Update.objects.bulk_create(rows)
    return document


def type_burst(document: Document) -> None:
    """20 more update rows, on top of what the document holds."""
    doc = pycrdt.Doc()
    doc.apply_update(history.state_at(history.read_changes(document.id, 5.0)))
    text = doc.get("cells", type=pycrdt.Array)[0]["source"]
    rows = []
    for _ in range(20):
        before = doc.get_state()
        text.insert(len(text), "b")
        data = update_log.pack_updates([doc.get_update(before)])
        rows.append(Update(document=document, data=data,
                           count=1))
    Update.objects.bulk_create(rows)


def measure(points: int) -> dict[str, Any]:
    document = seed(points)
    info = records.get_document(document.id)
    assert info is not None
    results: dict[str, Any] = {"points": points}
    for step in ("first compaction", "compaction", "timeline"):
        if step == "compaction":
            type_burst(document)
        with rows_read() as counts:
            started = time.perf_counter()
            if step == "timeline":
                line = asyncio.run(read_timeline(info, NOTEBOOK))
            else:
                folded = asyncio.run(history.fold_log(document.id, 5.0, doc_format=NOTEBOOK))
                assert len(folded) == 20, folded
            results[step] = {"ms": (time.perf_counter() - started) * 1000,
                             "update_rows": counts["updates"], "point_rows": counts["points"]}
    assert len(line.points) == points + 1, (len(line.points), points)  # both bursts: one
    return results


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (rows_axis, time_axis) = plt.subplots(1, 2, figsize=(10, 4))
    xs = [r["points"] for r in results]
    for key, label in (("first compaction", "first compaction (builds the checkpoint)"),
                       ("compaction", "compaction"), ("timeline", "opening the timeline")):
        rows_axis.plot(xs, [r[key]["update_rows"] for r in results], marker="o", label=label)
        time_axis.plot(xs, [r[key]["ms"] for r in results], marker="o", label=label)
    rows_axis.set(xlabel="points in the history", ylabel="rows with Yjs updates read",
                  title="Rows with updates read")
    time_axis.set(xlabel="points in the history", ylabel="ms", title="Time")
    for axis in (rows_axis, time_axis):
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="100,500,1000,2000,5000")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    call_command("migrate", interactive=False, verbosity=0)
    results = [measure(int(n)) for n in args.points.split(",")]
    steps = ("first compaction", "compaction", "timeline")
    print(table("History growth (SQLite, in process): rows with updates / point rows, ms",
                ["points", *steps],
                [[r["points"], *(f"{r[s]['update_rows']} / {r[s]['point_rows']}, "
                                 f"{r[s]['ms']:.1f}" for s in steps)] for r in results]))
    if args.json:
        write_json(args.json, {"results": results})
    if args.plot:
        try:
            plot(results, args.plot)
        except ImportError:
            print("matplotlib is not installed: no plot")


if __name__ == "__main__":
    main()
