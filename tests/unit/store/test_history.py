"""A document's history as points (:mod:`jupyter_ydjango.store.history`), in-process on the test
database: bursts, folding the log, thinning old points, and what each point holds."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pycrdt
import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command

from jupyter_ydjango.formats.builtin import FORMATS
from jupyter_ydjango.models import Document, Fork, Snapshot, Update
from jupyter_ydjango.protocol.engines import update_held
from jupyter_ydjango.store import history
from jupyter_ydjango.store.update_log import pack_updates, read_checkpoint

TEXT = FORMATS[("text", "file")]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module", autouse=True)
def database() -> None:
    call_command("migrate", interactive=False, verbosity=0)


class Writer:
    """A text document whose edits are written as update rows at given times."""

    def __init__(self) -> None:
        self.document = Document.objects.create(path=f"{uuid.uuid4().hex}.txt", format="text",
                                                type="file")
        self.doc = pycrdt.Doc(client_id=7)
        self.source = self.doc.get("source", type=pycrdt.Text)
        self._updates: list[bytes] = []
        self._subscription = self.doc.observe(lambda event: self._updates.append(event.update))

    def row(self, when: datetime, edit: object, authors: list[str] | None = None) -> None:
        """Make an edit (a callable on the document) and log it as a row created ``when``
        (by ``authors``)."""
        self._updates.clear()
        edit(self.doc)  # type: ignore[operator]
        row = Update.objects.create(document=self.document, data=pack_updates(self._updates),
                                    count=len(self._updates), authors=authors or [])
        Update.objects.filter(pk=row.pk).update(created=when)

    def type(self, when: datetime, text: str, authors: list[str] | None = None) -> None:
        self.row(when, lambda doc: self.source.insert(len(self.source), text), authors)

    def replace(self, when: datetime, text: str) -> None:
        """Replace the whole text, in one transaction."""
        def edit(doc: pycrdt.Doc) -> None:
            with doc.transaction():
                del self.source[0:len(self.source)]
                self.source.insert(0, text)

        self.row(when, edit)

    def content_at(self, when: datetime) -> str:
        return async_to_sync(history.content_at)(self.document.id, TEXT, when)

    def timeline(self, gap: float = 5.0) -> history.Timeline:
        return history.build_timeline(
            history.read_changes(self.document.id, gap, doc_format=TEXT), TEXT, gap)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def test_rows_are_grouped_in_bursts_and_cut_at_protected_points() -> None:
    rows = [(i, at(t), b"") for i, t in enumerate([0, 1, 2, 10, 11, 30])]
    groups = history.group_rows(reversed(rows), gap=5)
    assert [[r[0] for r in g] for g in groups] == [[0, 1, 2], [3, 4], [5]]
    groups = history.group_rows(rows, gap=5, protected=[at(1), at(10.5)])
    assert [[r[0] for r in g] for g in groups] == [[0, 1], [2], [3], [4], [5]]


def test_a_change_of_state_alone_neither_extends_nor_joins_bursts() -> None:
    """A save's hash written 0.9 s after an edit, and the next edit 0.9 s after that (gap 1):
    two bursts, each ending at its edit; by times alone the save would join them."""
    writer = Writer()
    state = writer.doc.get("state", type=pycrdt.Map)
    writer.type(at(0), "a")
    writer.row(at(0.9), lambda doc: state.__setitem__("hash", "h1"))
    writer.type(at(1.8), "b")
    writer.row(at(2.7), lambda doc: state.__setitem__("hash", "h2"))
    stored = history.read_history(writer.document.id)
    by_content = [c for c in history.changes_of(stored, 1.0, TEXT) if not c.reason]
    assert [(c.time, len(c.ids)) for c in by_content] == [(at(0), 2), (at(1.8), 2)]
    assert len([c for c in history.changes_of(stored, 1.0) if not c.reason]) == 1
    assert writer.timeline(1.0).points == [at(0), at(1.8)]
    async_to_sync(history.fold_log)(writer.document.id, 1.0, "", TEXT)
    assert writer.timeline(1.0).points == [at(0), at(1.8)]
    assert writer.content_at(at(0)) == "a" and writer.content_at(at(1.8)) == "ab"


def test_one_point_per_burst_that_changed_the_content() -> None:
    writer = Writer()
    writer.type(at(0), "a")
    writer.type(at(1), "b")
    writer.row(at(2), lambda doc: doc.get("state", type=pycrdt.Map).__setitem__("dirty", True))
    writer.type(at(20), "c")
    writer.row(at(40), lambda doc: doc.get("state", type=pycrdt.Map).__setitem__("hash", "x"))
    line = writer.timeline()
    # the state map alone makes no point, and a burst ends at its last change of content
    assert line.points == [at(1), at(20)]
    doc = pycrdt.Doc()
    doc.apply_update(line.state)
    assert str(doc.get("source", type=pycrdt.Text)) == "abc"
    assert doc.get("state", type=pycrdt.Map)["hash"] == "x"
    assert [writer.content_at(p) for p in line.points] == ["ab", "abc"]


def test_a_burst_split_into_snapshots_is_one_point() -> None:
    """A long burst folded in parts (the log reached its limit) is still one point; the
    import stays a point of its own."""
    writer = Writer()
    writer.type(at(0), "a")
    async_to_sync(history.fold_log)(writer.document.id, 5.0)
    Snapshot.objects.filter(document=writer.document).update(reason="import")
    writer.type(at(1), "b")
    async_to_sync(history.fold_log)(writer.document.id, 5.0)
    writer.type(at(2), "c")
    async_to_sync(history.fold_log)(writer.document.id, 5.0)
    assert Snapshot.objects.filter(document=writer.document).count() == 3
    assert writer.timeline().points == [at(0), at(2)]


def test_folding_keeps_the_points_and_encodes_bursts_compactly() -> None:
    writer = Writer()
    for i in range(200):
        writer.type(at(i * 0.01), "x")
    writer.row(at(3), lambda doc: writer.source.__delitem__(slice(0, 100)))
    for i in range(50):
        writer.type(at(60 + i * 0.01), "y")
    before = writer.timeline()
    rows = Update.objects.filter(document=writer.document)
    logged = sum(len(data) for data in rows.values_list("data", flat=True))
    folded = async_to_sync(history.fold_log)(writer.document.id, 5.0)
    assert len(folded) == 251 and not rows.exists()
    snapshots = Snapshot.objects.filter(document=writer.document).order_by("created")
    assert [(s.created, s.reason) for s in snapshots] == [(at(3), "edit"), (at(60.49), "edit")]
    assert sum(len(s.state) for s in snapshots) < logged / 5
    after = writer.timeline()
    assert after.points == before.points
    assert [writer.content_at(p) for p in after.points] == ["x" * 100, "x" * 100 + "y" * 50]


def test_folding_never_merges_across_a_point_an_open_timeline_shows() -> None:
    writer = Writer()
    writer.type(at(0), "a")
    writer.type(at(1), "b")
    Fork.objects.create(id=uuid.uuid4().hex, document=writer.document, kind="timeline",
                        state=b"\x00\x00", points=[history.to_micros(at(1))])
    writer.type(at(2), "c")  # the burst went on after the timeline was opened
    async_to_sync(history.fold_log)(writer.document.id, 5.0)
    assert writer.content_at(at(1)) == "ab"
    assert writer.content_at(at(2)) == "abc"


def test_deleted_marks_the_last_point() -> None:
    writer = Writer()
    writer.type(at(0), "a")
    async_to_sync(history.fold_log)(writer.document.id, 5.0, "deleted")
    assert list(Snapshot.objects.filter(document=writer.document).values_list(
        "reason", flat=True)) == ["deleted"]
    async_to_sync(history.fold_log)(writer.document.id, 5.0, "deleted")  # nothing logged since
    assert Snapshot.objects.filter(document=writer.document, reason="deleted").count() == 2


@pytest.mark.parametrize(("ages", "runs"), [
    # seconds before NOW of each snapshot, oldest first -> the runs merged (indices)
    ([3000, 2000, 1000], []),  # the last hour: every point stays
    ([7200 + 60, 7200 + 120, 7200 + 700], [[0, 1]]),  # last day: one per 10 minutes
    ([90000, 89000, 88000, 86000], [[0, 1, 2]]),  # older: one per hour (the last: a day)
])
def test_thinning_plan(ages: list[int], runs: list[list[int]]) -> None:
    snapshots = [(i, NOW - timedelta(seconds=age), "edit") for i, age in enumerate(ages)]
    assert history.plan_thinning(snapshots, NOW) == runs


def test_thinning_keeps_the_import_deletions_and_protected_points() -> None:
    old = NOW - timedelta(days=3)
    snapshots = [(0, old, "import"), (1, old + timedelta(minutes=1), "edit"),
                 (2, old + timedelta(minutes=2), "edit"), (3, old + timedelta(minutes=3), "edit"),
                 (4, old + timedelta(minutes=4), "deleted"), (5, old + timedelta(minutes=5),
                                                               "edit")]
    assert history.plan_thinning(snapshots, NOW) == [[1, 2, 3]]
    protected = [old + timedelta(minutes=1)]
    assert history.plan_thinning(snapshots, NOW, protected) == [[2, 3]]


def test_thinning_merges_old_points_and_drops_what_they_deleted() -> None:
    writer = Writer()
    start = NOW - timedelta(days=2)
    big = "z" * 20_000
    for minute in range(0, 50, 5):  # a big output written and replaced, every 5 minutes
        writer.replace(start + timedelta(minutes=minute), f"{big}{minute}")
    async_to_sync(history.fold_log)(writer.document.id, 5.0)
    snapshots = Snapshot.objects.filter(document=writer.document)
    assert snapshots.count() == 10
    stored = sum(len(s) for s in snapshots.values_list("state", flat=True))
    last = start + timedelta(minutes=45)
    before = writer.content_at(last)
    removed = async_to_sync(history.thin)(writer.document.id, NOW)
    assert removed == 9 and snapshots.count() == 1, "one point for the hour"
    assert snapshots.get().created == last
    assert writer.content_at(last) == before == f"{big}45"
    assert sum(len(s) for s in snapshots.values_list("state", flat=True)) < stored / 5


def test_each_point_keeps_its_authors_when_folded_and_thinned() -> None:
    writer = Writer()
    start = NOW - timedelta(days=2)
    writer.type(start, "a", ["alice"])
    writer.type(start + timedelta(seconds=1), "b", ["bob"])  # the same burst
    writer.row(start + timedelta(seconds=2), lambda doc: doc.get("state", type=pycrdt.Map)
               .__setitem__("dirty", False))  # the server's change: nobody's
    writer.row(start + timedelta(minutes=19), lambda doc: doc.get("state", type=pycrdt.Map)
               .__setitem__("dirty", True), ["erin"])  # a client's, of no content: no author
    writer.type(start + timedelta(minutes=20), "c", ["carol"])  # another hour's point
    writer.type(start + timedelta(minutes=90), "d", ["bob"])
    writer.type(start + timedelta(minutes=91), "e", ["dave"])  # the same hour
    expected = [("alice", "bob"), ("carol",), ("bob",), ("dave",)]
    assert writer.timeline().authors == expected
    async_to_sync(history.fold_log)(writer.document.id, 5.0, doc_format=TEXT)  # as rooms do
    assert not Update.objects.filter(document=writer.document).exists()
    assert writer.timeline().authors == expected
    async_to_sync(history.thin)(writer.document.id, NOW)
    assert writer.timeline().authors == [("alice", "bob", "carol"), ("bob", "dave")]


def test_only_unused_timeline_copies_expire() -> None:
    from django.utils import timezone as dj_timezone

    from jupyter_ydjango.store.forks import TIMELINE_EXPIRY, expire_timelines

    writer = Writer()
    long_ago = dj_timezone.now() - TIMELINE_EXPIRY - timedelta(minutes=1)
    ids = {}
    for name, kind, used in (("old", "timeline", long_ago), ("recent", "timeline", None),
                             ("fork", "fork", long_ago)):
        ids[name] = uuid.uuid4().hex
        Fork.objects.create(id=ids[name], document=writer.document, kind=kind, state=b"\x00\x00")
        if used is not None:
            Fork.objects.filter(pk=ids[name]).update(used=used)
    assert ids["old"] in expire_timelines()
    assert set(Fork.objects.filter(document=writer.document).values_list("id", flat=True)) == {
        ids["recent"], ids["fork"]}


def test_an_update_waiting_for_its_dependency_is_never_folded_away() -> None:
    """The log holds u2 but not u1, which u2 builds on (it is still on its way): folding
    keeps u2's row, and once u1 is logged the document holds both."""
    source_doc = pycrdt.Doc(client_id=11)
    text = source_doc.get("source", type=pycrdt.Text)
    updates: list[bytes] = []
    subscription = source_doc.observe(lambda event: updates.append(event.update))
    text.insert(0, "a")
    text.insert(1, "b")
    del text[0:1]  # u3: only a delete set, of an item u1 brings
    u1, u2, u3 = updates
    del subscription
    document = Document.objects.create(path=f"/{uuid.uuid4().hex}.txt", format="text",
                                       type="file")

    def log(update: bytes, when: datetime) -> None:
        row = Update.objects.create(document=document, data=pack_updates([update]), count=1)
        Update.objects.filter(pk=row.pk).update(created=when)

    log(u2, NOW - timedelta(minutes=2))
    log(u3, NOW - timedelta(minutes=1))
    replay = pycrdt.Doc()
    for update in (u2, u3):
        replay.apply_update(update)
        assert not update_held(update, replay.get_state())
    replay.apply_update(u1)
    assert all(update_held(u, replay.get_state()) for u in (u1, u2, u3))
    assert async_to_sync(history.fold_log)(document.id, 5.0, doc_format=TEXT) == []
    assert Update.objects.filter(document=document).count() == 2, "kept until u1 comes"
    log(u1, NOW)
    assert async_to_sync(history.content_at)(document.id, TEXT, NOW) == "b"
    assert len(async_to_sync(history.fold_log)(document.id, 5.0, doc_format=TEXT)) == 3
    assert not Update.objects.filter(document=document).exists()
    assert async_to_sync(history.content_at)(document.id, TEXT, NOW) == "b"


def test_points_past_the_retention_limit_roll_into_one_base_point() -> None:
    """A document edited over two years: what is older than a year becomes one point, the
    document as it was then; the younger points are thinned as usual."""
    writer = Writer()
    days = [730, 600, 400, 366, 200, 10]
    for n, age in enumerate(days):
        writer.type(NOW - timedelta(days=age), str(n))
    async_to_sync(history.fold_log)(writer.document.id, 5.0, doc_format=TEXT)
    assert len(writer.timeline().points) == 6
    assert async_to_sync(history.thin)(writer.document.id, NOW) == 3
    reasons = list(Snapshot.objects.filter(document=writer.document).order_by("created")
                   .values_list("reason", flat=True))
    assert reasons == ["base", "edit", "edit"]
    line = writer.timeline()
    assert line.points[0] == NOW - timedelta(days=366)
    assert len(line.points) == 3
    assert writer.content_at(NOW - timedelta(days=366)) == "0123"
    assert writer.content_at(NOW) == "012345"
    # a year later, the base takes in what has aged past the limit since, itself included
    assert async_to_sync(history.thin)(writer.document.id, NOW + timedelta(days=300)) == 1
    assert list(Snapshot.objects.filter(document=writer.document).order_by("created")
                .values_list("reason", flat=True)) == ["base", "edit"]
    assert writer.content_at(NOW) == "012345"


def test_a_protected_point_stops_the_roll_up() -> None:
    old = NOW - timedelta(days=500)
    snapshots = [(0, old, "import"), (1, old + timedelta(days=1), "edit"),
                 (2, old + timedelta(days=2), "edit"), (3, NOW, "edit")]
    cutoff = NOW - timedelta(days=365)
    assert history.plan_rollup(snapshots, cutoff) == [0, 1, 2]
    assert history.plan_rollup(snapshots, cutoff, [old + timedelta(days=1)]) == [0, 1]
    assert history.plan_rollup(snapshots, cutoff, [old]) == []


def test_the_history_of_files_deleted_long_ago_is_purged() -> None:
    from django.utils import timezone as dj_timezone

    now = dj_timezone.now()
    ages = {"long ago": 100, "recently": 10}
    documents = {}
    for name, age in ages.items():
        writer = Writer()
        writer.type(now - timedelta(days=age + 1), name)
        Document.objects.filter(pk=writer.document.pk).update(deleted=now - timedelta(days=age))
        documents[name] = writer.document.pk
    live = Writer()
    live.type(now - timedelta(days=1000), "live")
    assert history.purge_deleted(now) >= 1
    assert not Document.objects.filter(pk=documents["long ago"]).exists()
    assert not Update.objects.filter(document_id=documents["long ago"]).exists()
    assert Document.objects.filter(pk=documents["recently"]).exists()
    assert Document.objects.filter(pk=live.document.pk).exists()


def update_rows_read(function: Any) -> int:
    """How many rows holding Yjs updates (a state, a log row's data, a checkpoint) the
    queries of ``function()`` return."""
    from django.db.models.sql.compiler import SQLCompiler

    counted = [0]
    original = SQLCompiler.results_iter

    def counting(self: SQLCompiler, *args: Any, **kwargs: Any) -> Any:
        holds_updates = bool(set(self.query.values_select) & {"state", "data", "checkpoint"})
        for row in original(self, *args, **kwargs):
            counted[0] += holds_updates
            yield row

    SQLCompiler.results_iter = counting  # type: ignore[method-assign]
    try:
        function()
    finally:
        SQLCompiler.results_iter = original  # type: ignore[method-assign]
    return counted[0]


@pytest.mark.parametrize("points", [100, 5000])
def test_compactions_and_timelines_read_the_same_whatever_the_history(points: int) -> None:
    """A history of ``points`` hourly points, then a burst of 20 rows: once the checkpoint
    is built, a compaction reads those rows and the checkpoint, and the timeline the
    checkpoint, whether the history holds 100 points or 5,000."""
    writer = Writer()
    start = NOW - timedelta(hours=points + 1)
    snapshots = []
    for n in range(points):
        before = writer.doc.get_state()
        writer.source.insert(len(writer.source), "x")
        snapshots.append(Snapshot(document=writer.document, created=start + timedelta(hours=n),
                                  reason="import" if n == 0 else "edit",
                                  state=writer.doc.get_update(before)))
    Snapshot.objects.bulk_create(snapshots, batch_size=1000)
    try:
        check_reads(writer, points)
    finally:  # the database is the other tests' too (the admin's lists)
        writer.document.delete()


def check_reads(writer: Writer, points: int) -> None:
    for n in range(20):
        writer.type(NOW + timedelta(seconds=n / 10), "y")
    read_checkpoint(writer.document.id)  # built once, as the first reader does
    fold = update_rows_read(
        lambda: async_to_sync(history.fold_log)(writer.document.id, 5.0, doc_format=TEXT))
    assert fold == 20 + 1
    assert not Update.objects.filter(document=writer.document).exists()

    def timeline() -> None:
        snapshot_points, recent = history.read_points(writer.document.id)
        line = history.points_of(snapshot_points, recent, TEXT, 5.0)
        assert len(line.points) == points + 1
        replay = pycrdt.Doc()
        replay.apply_update(line.state)
        assert str(replay.get("source", type=pycrdt.Text)) == "x" * points + "y" * 20

    assert update_rows_read(timeline) == 1
    assert writer.timeline().points == history.points_of(
        *history.read_points(writer.document.id), TEXT, 5.0).points, "the same points"
