"""Scale-out: several service processes on Redis and PostgreSQL, clients spread over them.

Every test runs real processes: ``python -m jupyter_ydjango serve`` (separate processes, or
one ``serve --workers 2`` supervisor), a private ``redis-server`` on a free port, and a
PostgreSQL database of this module's own (created on the server at 127.0.0.1:5432, dropped
at the end). Clients are real Yjs clients (node y-websocket, typing into a ``Y.Text`` named
``t``) and pycrdt + jupyter_ydoc clients (:class:`docclient.DocClient`, editing the document's
content as JupyterLab does). Without PostgreSQL, ``redis-server`` or node, the tests skip and
say why.

What each test proves is in its docstring.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import nbformat
import pycrdt
import pytest
from backing_services import (
    LoadBalancer,
    PgDatabase,
    RedisServer,
    TcpForwarder,
    children,
    connections_by_worker,
    haproxy_binary,
    kill,
    postgres_user,
    redis_server_binary,
    serving_workers,
    wait_for_children,
    worker_health,
)
from daphne_servers import Server, migrate, serve_command, server_env
from django_service import DocServer
from jupyter_ydoc import YNotebook
from notebook_client import DocClient
from notebooks import generated_notebook
from prometheus_client.parser import text_string_to_metric_families
from signed import signed
from yjs_client import NodeDriver, YClient

from jupyter_ydjango.api.identity import Identity
from jupyter_ydjango.formats.notebook import read_notebook
from jupyter_ydjango.protocol.messages import read_var_uint
from jupyter_ydjango.rooms.owners import owner
from jupyter_ydjango.store.update_log import unpack_updates

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

TEXT = {"format": "text", "type": "file"}


# --- processes ------------------------------------------------------------------------------


class Service(DocServer):
    """A ``serve`` process (or ``serve --workers N`` supervisor) on the module's shared
    database, Redis and notebook root; the database is migrated once, by the cluster."""

    def __init__(self, tmp: Path, root: Path, name: str, env: dict[str, str],
                 args: Sequence[str] = ()) -> None:
        self.tmp, self.root, self.name, self.env = tmp, root, name, env
        self.args = list(args)
        self.server: Server | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.server = Server([*serve_command(), "--no-migrate", *self.args], self.env,
                             self.tmp / f"{self.name}-{self.starts}.log")

    def logs(self) -> str:
        """Everything this service printed, over all its starts."""
        return "".join((self.tmp / f"{self.name}-{n}.log").read_text(errors="replace")
                       for n in range(1, self.starts + 1))

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/collaboration/room"

    def get(self, path: str) -> tuple[int, str]:
        """A plain GET; ``(status, body)``."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/{path}",
                                        timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")


@dataclass
class Cluster:
    """The module's backing services and four ``serve`` processes sharing them."""

    tmp: Path
    root: Path
    db: PgDatabase
    redis: RedisServer
    env: dict[str, str]
    services: list[Service] = field(default_factory=list)
    extra: list[Service] = field(default_factory=list)

    def service(self, name: str, args: Sequence[str] = (), **env: str) -> Service:
        """Another process on the same notebook root and data, with ``env`` overrides;
        stopped with the cluster."""
        svc = Service(self.tmp, self.root, name, {**self.env, **env}, args)
        self.extra.append(svc)
        return svc

    def log_rows(self, file_id: str) -> tuple[int, int]:
        """``(rows, SUM(count))`` of a document's update log."""
        rows, total = self.db.query(
            "SELECT COUNT(*), COALESCE(SUM(count), 0) FROM jupyter_ydjango_update "
            "WHERE document_id = %s", (uuid.UUID(file_id),))[0]
        return int(rows), int(total)

    def document(self, file_id: str) -> dict[str, Any]:
        (row,) = self.db.query(
            "SELECT writer, writer_until, file_hash, imported FROM jupyter_ydjango_document "
            "WHERE id = %s", (uuid.UUID(file_id),))
        return dict(zip(("writer", "writer_until", "file_hash", "imported"), row, strict=True))


@dataclass
class LoggedUpdate:
    """One update of a document's log, replayed in log order after the snapshots."""

    row: int
    #: client ids whose clock the update advanced (empty: it changed nothing)
    authors: set[int]
    #: the ``source`` text's length after it
    source_length: int


def state_vector(doc: pycrdt.Doc) -> dict[int, int]:
    data = doc.get_state()
    count, pos = read_var_uint(data)
    out = {}
    for _ in range(count):
        client, pos = read_var_uint(data, pos)
        out[client], pos = read_var_uint(data, pos)
    return out


def server_client_id(client: DocClient) -> int:
    """The client id under which the server stores a pycrdt client's changes: its own.

    pycrdt draws 53-bit client ids and the server's pycrdt documents keep them as sent (y-py
    0.6 read them as 32-bit varints and stored them under another id), so the log's authors
    are the clients' own ids.
    """
    return client.doc.client_id


def replay_log(cluster: Cluster, file_id: str) -> tuple[pycrdt.Doc, int, list[LoggedUpdate]]:
    """The document rebuilt from its snapshots and update log (one update at a time, in row
    order), the source length after the snapshots, and what each logged update did."""
    key = (uuid.UUID(file_id),)
    doc = pycrdt.Doc()
    for (state,) in cluster.db.query("SELECT state FROM jupyter_ydjango_snapshot "
                                     "WHERE document_id = %s ORDER BY id", key):
        doc.apply_update(bytes(state))
    source = doc.get("source", type=pycrdt.Text)
    start = len(str(source))
    replayed = []
    for row, data in cluster.db.query("SELECT id, data FROM jupyter_ydjango_update "
                                      "WHERE document_id = %s ORDER BY id", key):
        for update in unpack_updates(bytes(data)):
            before = state_vector(doc)
            doc.apply_update(update)
            after = state_vector(doc)
            authors = {c for c, clock in after.items() if clock != before.get(c)}
            replayed.append(LoggedUpdate(row, authors, len(str(source))))
    return doc, start, replayed


def logged_source(cluster: Cluster, file_id: str) -> str:
    """The ``source`` text of the document as the database holds it."""
    doc, _, _ = replay_log(cluster, file_id)
    return str(doc.get("source", type=pycrdt.Text))


def start_all(factories: Sequence[Callable[[], Service]]) -> list[Service]:
    """Start several processes at once (each takes a couple of seconds to import Django)."""
    with concurrent.futures.ThreadPoolExecutor(len(factories)) as pool:
        return list(pool.map(lambda f: f(), factories))


def stop_all(services: Sequence[Service]) -> None:
    with concurrent.futures.ThreadPoolExecutor(max(1, len(services))) as pool:
        list(pool.map(lambda s: s.stop(), services))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    user, why = postgres_user()
    if user is None:
        pytest.skip(why)
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (a private Redis is started per module)")
    tmp = tmp_path_factory.mktemp("scaleout")
    root = tmp / "root"
    root.mkdir()
    db = PgDatabase(user, "ydjango_scaleout")
    redis = None
    cluster = None
    try:
        redis = RedisServer(tmp / "redis")
        env = server_env(tmp / "data", **{
            "YDJANGO_DATABASE_URL": db.url(),
            "YDJANGO_REDIS_URL": redis.url,
            "YDJANGO_NOTEBOOK_DIR": str(root),
            "YDJANGO_ALLOW_ANONYMOUS": "1",
            "YDJANGO_SAVE_DELAY": "0.2",
            "YDJANGO_FILE_POLL_INTERVAL": "0.2",
            "YDJANGO_ROOM_UNLOAD_DELAY": "1",
            "YDJANGO_RELAY_HEARTBEAT": "1",
            # no idle compaction during a test: the log rows are what some tests count
            "YDJANGO_COMPACT_IDLE": "600",
        })
        (tmp / "data").mkdir()
        migrate(env)
        cluster = Cluster(tmp, root, db, redis, env)
        cluster.services = start_all([
            (lambda i=i: Service(tmp, root, f"worker{i}", env)) for i in range(4)])
        yield cluster
    finally:
        if cluster is not None:
            stop_all(cluster.services + cluster.extra)
        if redis is not None:
            redis.stop()
        db.drop()


@pytest.fixture
async def driver(node_modules: Path) -> Any:
    """A node driver whose clients give up slowly (long reconnect backoff is capped)."""
    node = NodeDriver(default_timeout=60)
    await node.start()
    try:
        yield node
    finally:
        await node.shutdown()


# --- helpers --------------------------------------------------------------------------------


async def wait_until(predicate: Callable[[], Any], timeout: float = 30.0,
                     what: str = "condition", interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s (last: {value!r})")
        await asyncio.sleep(interval)


def write_text(root: Path, name: str, text: str = "first line\n") -> str:
    (root / name).write_text(text, encoding="utf-8")
    return name


def write_nb(root: Path, name: str, cells: int = 4) -> nbformat.NotebookNode:
    nb = generated_notebook(cells)
    (root / name).write_text(nbformat.writes(nb) + "\n", encoding="utf-8")
    return read_notebook((root / name).read_bytes())


async def connect_node(driver: NodeDriver, service: Service, session: dict[str, Any],
                       **kwargs: Any) -> YClient:
    """A y-websocket client in a document room, as JupyterLab's provider connects."""
    room = f"{session['format']}:{session['type']}:{session['fileId']}"
    return await driver.connect(service.ws_base, room, {"sessionId": session["sessionId"]},
                                timeout=30, **kwargs)


async def node_doc(client: YClient) -> pycrdt.Doc:
    """A node client's whole document, read with pycrdt."""
    doc = pycrdt.Doc()
    doc.apply_update(await client.state())
    return doc


def text_of(doc: pycrdt.Doc, name: str) -> str:
    return str(doc.get(name, type=pycrdt.Text))


def type_into(client: DocClient, text: str) -> None:
    """Type ``text`` at the end of a text document, one character per transaction."""
    source = client.model._ysource
    for ch in text:
        source.insert(len(source), ch)


def type_in_cell(client: DocClient, index: int, text: str) -> None:
    """Type ``text`` at the end of a notebook cell, one character per transaction."""
    source = client.model.ycells[index]["source"]
    for ch in text:
        source.insert(len(source), ch)


def type_on_line(client: DocClient, line: int, text: str) -> None:
    """Type ``text`` at the end of line ``line`` of a text document."""
    source = client.model._ysource
    current = str(source)
    end = current.index("\n", current.index(f"{line}:"))
    source.insert(end, text)


async def type_slowly(client: DocClient, text: str, pause: float = 0.01,
                      cell: int | None = None, line: int | None = None) -> None:
    for ch in text:
        if line is not None:
            type_on_line(client, line, ch)
        elif cell is None:
            type_into(client, ch)
        else:
            type_in_cell(client, cell, ch)
        await asyncio.sleep(pause)
    await client.flush()


async def close_all(clients: Sequence[Any]) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def letters(count: int, first: str = "A") -> list[str]:
    return [chr(ord(first) + i) for i in range(count)]


async def wait_metric(service: Service, name: str, value: float, timeout: float = 30) -> None:
    """Wait until ``/metrics`` shows ``name`` == ``value``."""
    last: dict[str, float] = {}

    def check() -> bool:
        last.update(metrics(service))
        return last.get(name) == value

    try:
        await wait_until(check, timeout, f"{name} == {value}", interval=0.2)
    except AssertionError:
        raise AssertionError(f"{name} is {last.get(name)}, not {value}") from None


def metrics(service: Service) -> dict[str, float]:
    """``/metrics`` as ``{sample name: value}`` (label-less samples)."""
    status, body = service.get("metrics")
    assert status == 200, body
    values = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if not sample.labels:
                values[sample.name] = sample.value
    return values


# --- 1. convergence -------------------------------------------------------------------------


@pytest.mark.node
@pytest.mark.parametrize("workers", [2, 4])
async def test_clients_spread_over_workers_converge(cluster: Cluster, driver: NodeDriver,
                                                    workers: int) -> None:
    """Node y-websocket clients and pycrdt clients in one ``text:file`` room (opened through
    the session API), spread round-robin over 2 or 4 processes, all typing at once: every
    client ends with the same document, with every character typed, and the file on disk
    holds the typed content."""
    services = cluster.services[:workers]
    # each pycrdt client types on a line of its own, so that the file's content is known
    # exactly; the Yjs clients (32-bit ids) type concurrently at one position.
    lines = "".join(f"{i}:\n" for i in range(workers))
    name = write_text(cluster.root, f"converge-{workers}.txt", lines)
    session = services[0].session(name, TEXT)
    nodes = [await connect_node(driver, services[i % workers], session) for i in range(2 * workers)]
    docs = [await DocClient.open(services[i % workers].room_url(session), "file")
            for i in range(workers)]
    per_node, per_doc = 25, 15
    node_chars, doc_chars = letters(len(nodes), "A"), letters(len(docs), "a")

    await asyncio.gather(
        *(c.burst(per_node, 5, chars=ch) for c, ch in zip(nodes, node_chars, strict=True)),
        *(type_slowly(d, ch * per_doc, line=i)
          for i, (d, ch) in enumerate(zip(docs, doc_chars, strict=True))),
    )
    t_len = per_node * len(nodes)
    source_len = len(lines) + per_doc * len(docs)
    texts = [await c.wait_text(length=t_len, timeout=30) for c in nodes]
    for d in docs:
        await d.wait_for(lambda m: len(m.get()) == source_len, timeout=30)
        await wait_until(lambda d=d: len(text_of(d.doc, "t")) == t_len, what="t in pycrdt")
    assert len(set(texts)) == 1
    for ch in node_chars:
        assert texts[0].count(ch) == per_node, ch
    sources = {d.model.get() for d in docs}
    node_docs = [await node_doc(c) for c in nodes]
    sources |= {text_of(doc, "source") for doc in node_docs}
    assert len(sources) == 1, sources
    (source,) = sources
    assert source == "".join(f"{i}:{ch * per_doc}\n" for i, ch in enumerate(doc_chars))
    assert {text_of(d.doc, "t") for d in docs} == {texts[0]}
    path = cluster.root / name
    await wait_until(lambda: path.read_text(encoding="utf-8") == source, what="the save")
    await close_all(nodes + docs)


# --- 2. the log is written once per update ----------------------------------------------------


@pytest.mark.node
async def test_update_log_written_once_per_update(cluster: Cluster, driver: NodeDriver) -> None:
    """N single-character edits made by clients of worker A, while clients of worker B
    receive them: the update log holds exactly N updates (A logs its clients' updates; B,
    which applies the same updates from the relay, logs none of them). Each process then logs
    an edit of its own client: the log is written in order, so anything either had queued
    before is in the log once that edit is."""
    a, b = cluster.services[:2]
    write_nb(cluster.root, "once.ipynb", 3)
    session = a.session("once.ipynb")
    file_id = session["fileId"]
    writer_doc = await DocClient.open(a.room_url(session))
    writer_node = await connect_node(driver, a, session)
    marker_a = await DocClient.open(a.room_url(session))
    listen_doc = await DocClient.open(b.room_url(session))
    listen_node = await connect_node(driver, b, session)
    assert cluster.log_rows(file_id) == (0, 0)
    typed = "0123456789" * 3
    await asyncio.gather(type_slowly(writer_doc, typed, 0.005, cell=1),
                         writer_node.burst(30, 5, chars="xyz"))
    n = len(typed) + 30
    await listen_node.wait_text(length=30, timeout=30)
    await listen_doc.wait_for(lambda m: m.get()["cells"][1]["source"].endswith(typed))
    typists = {server_client_id(writer_doc), writer_node.client_id}

    def typed_and_logged() -> int:
        return sum(1 for u in replay_log(cluster, file_id)[2] if u.authors & typists)

    await wait_until(lambda: typed_and_logged() >= n, interval=0.2, what="the log rows")
    markers = {server_client_id(marker_a), server_client_id(listen_doc)}
    type_in_cell(marker_a, 0, "A")
    type_in_cell(listen_doc, 0, "B")
    await asyncio.gather(marker_a.flush(), listen_doc.flush())

    def markers_logged() -> int:
        return sum(1 for u in replay_log(cluster, file_id)[2] if u.authors & markers)

    await wait_until(lambda: markers_logged() >= 2, interval=0.2,
                     what="each process's own edit in the log")
    assert markers_logged() == 2
    while True:  # the writer's saves may log state changes meanwhile: read a stable log
        rows, total = cluster.log_rows(file_id)
        _, _, logged = replay_log(cluster, file_id)
        if cluster.log_rows(file_id) == (rows, total):
            break
    mine = [u for u in logged if u.authors & typists]
    others = [u for u in logged if not u.authors & (typists | markers)]
    assert len(mine) == n, f"{len(mine)} updates logged for {n} edits"
    assert all(u.authors for u in logged), "an update was logged twice"
    # the rest is the writer process's own changes of the state map (hash, dirty) at saves
    assert len({author for u in others for author in u.authors}) <= 1, others
    assert total == n + len(others) + 2 and 1 <= rows <= total
    await close_all([writer_doc, writer_node, marker_a, listen_doc, listen_node])


# --- 3. the import race -----------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(4))
async def test_simultaneous_first_open_imports_once(cluster: Cluster, round_: int) -> None:
    """Nine clients on three processes open a notebook nobody opened before, at the same
    moment: exactly one process imports the file (one ``import`` snapshot), and every client,
    alone or with every other client's state merged in, sees each cell once.

    Run a few times: the processes that lose the race load the winner's history while it
    commits, and an inconsistent read there gave some of them an empty document (about one
    race in five before :func:`store.load_history` ordered its reads)."""
    services = cluster.services[:3]
    name = f"race-{round_}.ipynb"
    nb = write_nb(cluster.root, name, 12)
    session = services[0].session(name)
    clients = await asyncio.gather(*(
        DocClient.open(services[i % 3].room_url(session)) for i in range(9)))
    ids = [c.id for c in nb.cells]
    got = {i: [c["id"] for c in client.model.get()["cells"]] for i, client in enumerate(clients)}
    assert all(cells == ids for cells in got.values()), got
    imports = cluster.db.query(
        "SELECT COUNT(*) FROM jupyter_ydjango_snapshot WHERE document_id = %s "
        "AND reason = 'import'", (uuid.UUID(session["fileId"]),))[0][0]
    assert imports == 1
    assert cluster.document(session["fileId"])["imported"]
    merged = pycrdt.Doc()
    for client in clients:
        merged.apply_update(client.doc.get_update())
    assert [c["id"] for c in YNotebook(merged).get()["cells"]] == ids
    # the room, saved: its writer writes it unless the file holds it already
    assert await clients[0].save() in ("success", "skipped")
    on_disk = read_notebook((cluster.root / name).read_bytes())
    assert [c.id for c in on_disk.cells] == ids
    await close_all(clients)


# --- 4. one writer per file -------------------------------------------------------------------


async def test_one_writer_per_file(cluster: Cluster) -> None:
    """Clients of two processes edit one notebook: the file ends up with every edit, written
    by one process only (the lease in ``jupyter_ydjango_document.writer`` names one room
    throughout), and a save requested through the other process answers ``success`` once
    the writer has saved what it holds."""
    a, b = cluster.services[:2]
    path = cluster.root / "writer.ipynb"
    write_nb(cluster.root, path.name, 4)
    session = a.session(path.name)
    file_id = session["fileId"]
    on_a = await DocClient.open(a.room_url(session))
    on_b = await DocClient.open(b.room_url(session))
    writers = set()
    def saved(rounds: int) -> bool:
        cells = read_notebook(path.read_bytes()).cells
        return (cells[0].source.endswith("".join(f" a{i}" for i in range(rounds)))
                and cells[2].source.endswith("".join(f" b{i}" for i in range(rounds))))

    for round_ in range(5):
        await type_slowly(on_a, f" a{round_}", 0.005, cell=0)
        await type_slowly(on_b, f" b{round_}", 0.005, cell=2)
        await wait_until(lambda r=round_: saved(r + 1), what=f"round {round_} in the file")
        writers.add(cluster.document(file_id)["writer"])
    assert len(writers) == 1 and "" not in writers, writers
    saves = {svc.name: svc.logs().count(f"saved {path.name}") for svc in (a, b)}
    assert sorted(saves.values())[0] == 0 and sorted(saves.values())[1] >= 1, saves
    writer_name = max(saves, key=saves.get)
    other = on_b if writer_name == a.name else on_a
    # the non-writer's explicit save: the writer already holds and saved the same document
    mtime = path.stat().st_mtime_ns
    assert await other.save() == "success"
    assert path.stat().st_mtime_ns == mtime, "the non-writer wrote the file"
    assert saves == {svc.name: svc.logs().count(f"saved {path.name}") for svc in (a, b)}
    await close_all([on_a, on_b])


# --- 5 and 9. serve --workers 2 -------------------------------------------------------------


@pytest.fixture(scope="module")
def supervised(cluster: Cluster) -> Iterator[Service]:
    """``python -m jupyter_ydjango serve --workers 2`` on the cluster's Redis and database."""
    svc = cluster.service("supervisor", args=("--workers", "2"))
    supervisor = svc.server.proc.pid
    seen: set[int] = set()
    try:
        seen |= set(wait_for_children(supervisor, 2))
        deadline = time.monotonic() + 30
        while svc.get("healthz")[0] != 200:
            assert time.monotonic() < deadline, svc.logs()[-3000:]
            time.sleep(0.2)
        svc.seen_workers = seen  # type: ignore[attr-defined]
        yield svc
    finally:
        seen |= set(children(supervisor))
        svc.stop()
        for pid in seen:  # workers the supervisor left behind, if any
            kill(pid, only_if="jupyter_ydjango")


def serving(svc: Service, count: int = 2) -> dict[int, int]:
    """Worker number -> pid of the supervisor's workers, once ``count`` of them serve."""
    workers = serving_workers(svc.server.proc.pid, count)
    svc.seen_workers |= set(workers.values())  # type: ignore[attr-defined]
    return workers


def rooms_for_each_worker(cluster: Cluster, svc: Service, prefix: str, per_worker: int,
                          workers: Sequence[int] = (0, 1)) -> dict[int, list[dict[str, Any]]]:
    """Sessions of new text files until each worker owns ``per_worker`` of their rooms (the
    file ids are random: which worker owns a room is known only once it has one); each
    session with its ``file`` name."""
    owned: dict[int, list[dict[str, Any]]] = {w: [] for w in workers}
    for n in range(50 * per_worker):
        name = write_text(cluster.root, f"{prefix}-{n}.txt", "")
        session = {**svc.session(name, TEXT), "file": name}
        mine = owned[owner(room_name(session), workers)]
        if len(mine) < per_worker:
            mine.append(session)
        if all(len(sessions) == per_worker for sessions in owned.values()):
            return owned
    raise AssertionError(f"50 rooms per wanted room did not cover every worker: {owned}")


def room_name(session: dict[str, Any]) -> str:
    return f"{session['format']}:{session['type']}:{session['fileId']}"


async def holders(workers: dict[int, int], svc: Service,
                  clients: Sequence[Any]) -> dict[int, int]:
    """How many of ``clients`` (node clients and DocClients, by their local ports) each
    worker holds."""
    ports = connections_by_worker(list(workers.values()), svc.port)
    mine = [c.ws.local_address[1] if isinstance(c, DocClient) else (await c.info())["local_port"]
            for c in clients]
    return {n: sum(port in ports[pid] for port in mine) for n, pid in workers.items()}


@pytest.mark.node
async def test_a_rooms_clients_of_both_kinds_are_served_by_its_owner(
        cluster: Cluster, supervised: Service, driver: NodeDriver) -> None:
    """``serve --workers 2``: in each of 6 rooms, two node y-websocket clients (32-bit client
    ids) and a pycrdt client (53-bit) connect through the one address. Every client of a
    room is held by the worker that owns the room, the rooms are spread over both workers,
    each worker has loaded only its own rooms, and the clients of each room converge."""
    svc = supervised
    workers = serving(svc)
    owned = rooms_for_each_worker(cluster, svc, "owned", 3)
    clients: dict[str, list[Any]] = {}
    try:
        for sessions in owned.values():
            for session in sessions:
                clients[room_name(session)] = [
                    await connect_node(driver, svc, session, text="source"),
                    await connect_node(driver, svc, session, text="source"),
                    await DocClient.open(svc.room_url(session), "file")]
        for worker, sessions in owned.items():
            for session in sessions:
                held = await holders(workers, svc, clients[room_name(session)])
                assert held == {worker: 3, 1 - worker: 0}, (room_name(session), held)
        for n in workers:  # (rooms preloaded at the session requests not used unload)
            await wait_until(lambda n=n: (worker_health(workers[n])["rooms"],
                                          worker_health(workers[n])["connections"]) == (3, 9),
                             20, f"worker {n} holds its 3 rooms and 9 connections")
        for name, (a, b, py) in clients.items():
            await a.append("a")
            await b.append("b")
            type_into(py, "p")
            for c in (a, b):
                assert sorted(await c.wait_text(length=3, timeout=20)) == ["a", "b", "p"], name
            await wait_until(lambda py=py: len(text_of(py.doc, "source")) == 3, 20, name)
    finally:
        await close_all([c for room in clients.values() for c in room])


@pytest.mark.node
async def test_a_killed_worker_loses_no_edit(cluster: Cluster, supervised: Service,
                                             driver: NodeDriver) -> None:
    """Two rooms on each worker, three node clients typing in each. Worker 0 is SIGKILLed
    midway: its rooms are served again by worker 1 within 5 s (y-websocket reconnects),
    worker 1's clients are not disconnected, and every character typed anywhere reaches
    every client of its room, the update log and the file, once. When worker 0 serves again,
    its rooms move back to it (closed with 4502, and reconnected)."""
    svc = supervised
    workers = serving(svc)
    owned = rooms_for_each_worker(cluster, svc, "killed", 2)
    per_client = 60
    chars = letters(3)
    rooms: dict[int, list[tuple[dict[str, Any], list[YClient]]]] = {0: [], 1: []}
    try:
        for worker, sessions in owned.items():
            for session in sessions:
                rooms[worker].append((session, [
                    await connect_node(driver, svc, session, text="source") for _ in chars]))
        everyone = [c for pairs in rooms.values() for _, cs in pairs for c in cs]
        first = rooms[0][0][1][0]
        killed_at = 0.0

        async def kill_midway() -> None:
            nonlocal killed_at
            while len(await first.text()) < per_client:
                await asyncio.sleep(0.01)
            killed_at = await driver.now()
            kill(workers[0])

        await asyncio.gather(*(c.burst(per_client, 20, chars=ch) for _, cs in rooms[0] + rooms[1]
                               for c, ch in zip(cs, chars, strict=True)), kill_midway())
        total = per_client * len(chars)
        for _, cs in rooms[0] + rooms[1]:
            texts = [await c.wait_text(length=total, timeout=45) for c in cs]
            assert len(set(texts)) == 1
            assert all(texts[0].count(ch) == per_client for ch in chars), texts[0]
        for _, cs in rooms[0]:
            for c in cs:
                synced = [e["t"] for e in await c.events()
                          if e["type"] == "sync" and e["synced"] and e["t"] > killed_at]
                assert synced and synced[0] - killed_at < 5000, (synced, killed_at)
        for _, cs in rooms[1]:
            for c in cs:
                assert await c.close_events() == []

        back = serving(svc)
        assert back[0] != workers[0] and back[1] == workers[1]
        for _, cs in rooms[0]:
            for c in cs:
                deadline = time.monotonic() + 30
                while (await holders(back, svc, [c]))[0] != 1:
                    assert time.monotonic() < deadline, "the room did not move back to worker 0"
                    await asyncio.sleep(0.1)
        await close_all(everyone)
        for session, _ in rooms[0] + rooms[1]:
            file = cluster.root / session["file"]
            await wait_until(lambda f=file: len(f.read_text()) == total, 30, "the file saved")
            assert all(file.read_text().count(ch) == per_client for ch in chars)
            doc, _, _ = replay_log(cluster, session["fileId"])
            assert all(text_of(doc, "source").count(ch) == per_client for ch in chars)
    finally:
        await close_all([c for pairs in rooms.values() for _, cs in pairs for c in cs])


@pytest.mark.node
async def test_metrics_add_up_over_workers(cluster: Cluster, supervised: Service,
                                           driver: NodeDriver) -> None:
    """``/metrics`` of ``serve --workers 2`` adds up every worker's numbers, whichever worker
    answers: ``ydjango_connections`` is the number of open room connections,
    ``ydjango_rooms_loaded`` the number of (worker, room) pairs, ``ydjango_updates_total``
    grows by the updates each worker applied. A room per worker, two clients each."""
    svc = supervised
    serving(svc)
    await wait_metric(svc, "ydjango_rooms_loaded", 0)
    before = metrics(svc)
    assert before["ydjango_connections"] == 0
    owned = rooms_for_each_worker(cluster, svc, "metrics", 1)
    clients = [await connect_node(driver, svc, sessions[0])
               for sessions in owned.values() for _ in range(2)]
    await clients[0].burst(20, 5)
    await clients[2].burst(20, 5)
    for c in clients:
        await c.wait_text(length=20, timeout=20)
    # the sessions asked for while looking for a room per worker preloaded rooms nobody
    # joined: they unload 1 s after loading, and only then are 2 rooms loaded
    await wait_metric(svc, "ydjango_rooms_loaded", 2)
    for _ in range(4):  # any worker may answer: each must give the sum over both
        after = metrics(svc)
        assert after["ydjango_connections"] == len(clients)
        assert after["ydjango_rooms_loaded"] == 2
        grown = after["ydjango_updates_total"] - before["ydjango_updates_total"]
        assert 40 <= grown <= 50, grown
    await close_all(clients)
    await wait_metric(svc, "ydjango_connections", 0)
    await wait_metric(svc, "ydjango_rooms_loaded", 0)


class Through(DocServer):
    """The session API and the rooms of the services behind an address (a load balancer)."""

    def __init__(self, port: int) -> None:  # (nothing to start)
        self._port = port

    @property
    def port(self) -> int:
        return self._port


@pytest.fixture(scope="module")
def balanced(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[LoadBalancer, list[Service]]]:
    """Two ``serve`` instances behind HAProxy with the shipped ``deploy/haproxy.cfg``."""
    if haproxy_binary() is None:
        pytest.skip("haproxy is not installed (Debian's package haproxy; .ci/run installs it)")
    services = [cluster.service(f"balanced{n}") for n in (1, 2)]
    balancer = LoadBalancer(tmp_path_factory.mktemp("haproxy"),
                            [f"127.0.0.1:{svc.port}" for svc in services])
    try:
        yield balancer, services
    finally:
        balancer.stop()


@pytest.mark.node
async def test_a_load_balancer_sends_each_room_to_one_instance(
        cluster: Cluster, balanced: tuple[LoadBalancer, list[Service]],
        driver: NodeDriver) -> None:
    """HAProxy with the shipped configuration in front of two ``serve`` instances: in each
    of 16 rooms, two node clients and a pycrdt client connect through HAProxy. Each room is
    loaded in one instance only (the instances together hold 16 rooms and 48 connections),
    the rooms spread over both, and every room's clients converge."""
    balancer, services = balanced
    front = Through(balancer.port)
    sessions = [front.session(write_text(cluster.root, f"balanced-{n}.txt", ""), TEXT)
                for n in range(16)]
    clients: list[list[Any]] = []
    try:
        for session in sessions:
            room = f"ws://127.0.0.1:{balancer.port}/api/collaboration/room"
            clients.append([
                await driver.connect(room, room_name(session),
                                     {"sessionId": session["sessionId"]}, text="source",
                                     timeout=30),
                await driver.connect(room, room_name(session),
                                     {"sessionId": session["sessionId"]}, text="source",
                                     timeout=30),
                await DocClient.open(front.room_url(session), "file")])

        def held() -> list[tuple[int, int]]:
            return [(h["rooms"], h["connections"]) for h in
                    (json.loads(svc.get("healthz")[1]) for svc in services)]

        # (rooms preloaded at a session request by the other instance unload after 1 s)
        counts = await wait_until(lambda: (sum(r for r, _ in held()) == 16
                                           and sum(c for _, c in held()) == 48 and held()),
                                  30, "16 rooms and 48 connections over the two instances")
        assert all(rooms > 0 for rooms, _ in counts), counts
        for a, b, py in clients:
            await a.append("a")
            await b.append("b")
            type_into(py, "p")
            for c in (a, b):
                assert sorted(await c.wait_text(length=3, timeout=20)) == ["a", "b", "p"]
            await wait_until(lambda py=py: len(text_of(py.doc, "source")) == 3, 20)
    finally:
        await close_all([c for room in clients for c in room])


# --- 6. Redis restarts ------------------------------------------------------------------------


@pytest.mark.node
async def test_redis_restart(cluster: Cluster, driver: NodeDriver, tmp_path: Path) -> None:
    """Two processes on a Redis of their own, clients on both; Redis is stopped and started
    again on the same port (empty: no persistence).

    While Redis is down, no connection is dropped, the clients of one process keep editing
    together (the room is in that process), the other process gets nothing, and a new
    connection waits for Redis instead of being refused. Once Redis is back, the new
    connection is accepted, the relay heartbeat re-joins the groups, the gap is repaired by a
    resync, and every client on both sides (the new one too) ends with every edit: those made
    while Redis was down and those made after."""
    redis = RedisServer(tmp_path / "redis")
    pair: list[Service] = []
    try:
        pair = start_all([(lambda i=i: cluster.service(f"redis-restart{i}",
                                                       YDJANGO_REDIS_URL=redis.url))
                          for i in range(2)])
        name = write_text(cluster.root, "redis-restart.txt", "0:\n1:\n")
        session = pair[0].session(name, TEXT)
        nodes = [await connect_node(driver, pair[i % 2], session) for i in range(4)]
        docs = [await DocClient.open(svc.room_url(session), "file") for svc in pair]
        await asyncio.gather(*(c.append(ch) for c, ch in zip(nodes, "ABCD", strict=True)))
        for c in nodes:
            await c.wait_text(length=4, timeout=20)

        redis.stop()
        # typed while Redis is down
        await asyncio.gather(*(c.burst(10, 20, chars=ch)
                               for c, ch in zip(nodes, "abcd", strict=True)))
        for i, d in enumerate(docs):
            type_on_line(d, i, "down")
        for i, c in enumerate(nodes):  # the clients of one process still edit together
            same, other = "abcd"[i % 2::2], "abcd"[1 - i % 2::2]
            text = await c.wait_text(length=4 + 10 * len(same), timeout=20)
            assert all(text.count(ch) == 10 for ch in same), (i, text)
            assert not any(ch in text for ch in other), (i, text)
        # a new connection needs the layer: it waits (YDJANGO_CHANNEL_LAYER_WAIT) for Redis
        waiting = "joining the room's group: the channel layer is unreachable"
        waited = pair[0].logs().count(waiting)
        opening = asyncio.ensure_future(
            DocClient.open(pair[0].room_url(session), "file", timeout=60))
        await wait_until(lambda: pair[0].logs().count(waiting) > waited,
                         what="the new connection waiting for Redis")
        assert not opening.done(), "a connection was answered while Redis was down"
        redis.start()
        late = await opening
        # typed after it came back
        await asyncio.gather(*(c.burst(10, 20, chars=ch)
                               for c, ch in zip(nodes, "ABCD", strict=True)))
        for i, d in enumerate(docs):
            type_on_line(d, i, " up")
        total = 4 + 4 * 10 * 2
        texts = [await c.wait_text(length=total, timeout=45) for c in nodes]
        assert len(set(texts)) == 1
        for ch in "ABCD":
            assert texts[0].count(ch) == 11 and texts[0].count(ch.lower()) == 10
        expected = "0:down up\n1:down up\n"
        for d in [*docs, late]:
            await d.wait_for(lambda m: m.get() == expected, timeout=30)
            await wait_until(lambda d=d: text_of(d.doc, "t") == texts[0], what="t in pycrdt")
        for c in nodes:
            assert text_of(await node_doc(c), "source") == expected
            assert await c.close_events() == [], "a connection was dropped"
        assert late.close_code is None
        await close_all([*nodes, *docs, late])
    finally:
        stop_all(pair)
        redis.stop()


# --- 6b. a process killed -------------------------------------------------------------------


#: The cluster's YDJANGO_RELAY_HEARTBEAT, in seconds.
HEARTBEAT = 1.0


@pytest.mark.node
async def test_a_killed_process_leaves_no_ghost_cursors(cluster: Cluster,
                                                         driver: NodeDriver) -> None:
    """Node clients of three processes in one room announce awareness states. One process is
    SIGKILLed, so it says no goodbye: the clients of the other two lose its client's state
    once it missed a heartbeat (within two heartbeats of its last message, plus a quarter
    heartbeat between checks: under 4 heartbeats after the kill), and keep each other's."""
    victim, *others = start_all([(lambda i=i: cluster.service(f"ghost{i}")) for i in range(3)])
    try:
        name = write_text(cluster.root, "ghost.txt", "")
        session = victim.session(name, TEXT)
        ghost, *watchers = [await connect_node(driver, svc, session)
                            for svc in (victim, *others)]
        for client in (ghost, *watchers):
            await client.set_awareness({"user": client.name})
        for watcher in watchers:
            for client in (ghost, *watchers):
                await watcher.wait_awareness(client.client_id, timeout=20,
                                             state={"user": client.name})
        victim.kill()
        killed = time.monotonic()
        for watcher in watchers:
            await watcher.wait_awareness(ghost.client_id, present=False, timeout=30)
        elapsed = time.monotonic() - killed
        assert elapsed < 4 * HEARTBEAT, f"the ghost stayed {elapsed:.1f} s"
        for watcher in watchers:  # the living keep each other
            states = await watcher.awareness()
            assert {c.client_id for c in watchers} <= set(states), states
        await close_all([ghost, *watchers])
    finally:
        stop_all([victim, *others])


async def test_relayed_changes_survive_their_origin(cluster: Cluster) -> None:
    """Process A cannot reach PostgreSQL (its forwarder is paused): what its client types
    reaches process B through the relay, and A cannot log it. A is SIGKILLed: B, which never
    got A's word that those changes were stored, writes them to the log itself."""
    forwarder = TcpForwarder("127.0.0.1", 5432)
    a = b = None
    try:
        a, b = start_all([
            lambda: cluster.service("durable-a",
                                    YDJANGO_DATABASE_URL=cluster.db.url(port=forwarder.port)),
            lambda: cluster.service("durable-b")])
        name = write_text(cluster.root, "durable.txt", "0:\n")
        session = b.session(name, TEXT)
        file_id = session["fileId"]
        on_a = await DocClient.open(a.room_url(session), "file")
        on_b = await DocClient.open(b.room_url(session), "file")
        forwarder.pause()
        await type_slowly(on_a, "only in memory", line=0)
        expected = "0:only in memory\n"
        await on_b.wait_for(lambda m: m.get() == expected, timeout=30)
        await on_a.wait_raw(lambda m: m.get("type") == "store" and m["status"] == "failing",
                            timeout=20)
        assert logged_source(cluster, file_id) == "0:\n"
        a.kill()
        await on_a.close()
        await wait_until(lambda: logged_source(cluster, file_id) == expected, interval=0.2,
                         what="the changes of the killed process in the log")
        assert "did not confirm" in b.logs()
        await on_b.close()
    finally:
        stop_all([svc for svc in (a, b) if svc is not None])
        forwarder.close()


# --- 7. PostgreSQL briefly unavailable --------------------------------------------------------


async def test_postgres_briefly_unavailable(cluster: Cluster) -> None:
    """Two processes reach PostgreSQL through a forwarder that is paused for a few seconds
    (connections cut, new ones refused) while clients of both keep typing: their clients
    are told ``{"type": "store", "status": "failing"}`` and later ``"ok"``; afterwards the
    log holds every update once, in the order typed, and a room restarted from the
    database (the processes SIGKILLed) has all of them."""
    forwarder = TcpForwarder("127.0.0.1", 5432)
    pair: list[Service] = []
    try:
        url = cluster.db.url(port=forwarder.port)
        pair = start_all([(lambda i=i: cluster.service(f"pg-pause{i}", YDJANGO_DATABASE_URL=url))
                          for i in range(2)])
        name = write_text(cluster.root, "pg-pause.txt", "0:\n1:\n")
        session = pair[0].session(name, TEXT)
        file_id = session["fileId"]
        clients = [await DocClient.open(svc.room_url(session), "file") for svc in pair]
        a_text = [f"a{i % 10}" for i in range(30)]
        b_text = [f"b{i % 10}" for i in range(30)]

        async def typing(line: int, chunks: list[str], start: int, stop: int) -> None:
            await type_slowly(clients[line], "".join(chunks[start:stop]), 0.01, line=line)

        async def type_both(start: int, stop: int) -> None:
            await asyncio.gather(typing(0, a_text, start, stop), typing(1, b_text, start, stop))

        await type_both(0, 10)
        first = "".join(f"{i}:{''.join(t[:10])}\n" for i, t in enumerate((a_text, b_text)))
        await wait_until(lambda: logged_source(cluster, file_id) == first, interval=0.2,
                         what="the first edits logged")
        logged_before = cluster.log_rows(file_id)[1]
        forwarder.pause()
        await type_both(10, 20)
        for c in clients:
            await c.wait_raw(lambda m: m.get("type") == "store" and m["status"] == "failing",
                             timeout=20)
        status, _ = pair[0].get("healthz")
        assert status == 503
        await asyncio.sleep(2.0)
        assert cluster.log_rows(file_id)[1] == logged_before, "written while it was away?"
        forwarder.resume()
        await type_both(20, 30)
        for c in clients:
            await c.wait_raw(lambda m: m.get("type") == "store" and m["status"] == "ok",
                             timeout=20)
            failing = [i for i, m in enumerate(c.raw) if m.get("status") == "failing"]
            ok = [i for i, m in enumerate(c.raw) if m.get("status") == "ok"]
            assert failing and ok and failing[0] < ok[-1]
        n = 2 * 60  # single characters
        expected = "".join(f"{i}:{''.join(t)}\n" for i, t in enumerate((a_text, b_text)))
        for c in clients:
            await c.wait_for(lambda m: m.get() == expected)
        await wait_until(lambda: logged_source(cluster, file_id) == expected, interval=0.3,
                         what="every update logged")

        # the log, replayed in row order one update at a time: each typed character is
        # there once, applies at once (nothing depends on a later row) and adds one
        # character; every other logged update is the server's own (the state map)
        replay, length, logged = replay_log(cluster, file_id)
        typists = {server_client_id(c) for c in clients}
        steps = collections.Counter()
        for update in logged:
            assert update.authors, f"row {update.row}: an update logged twice"
            if update.authors & typists:
                steps[update.source_length - length] += 1
            else:
                assert update.source_length == length
            length = update.source_length
        assert steps == {1: n}, steps
        assert str(replay.get("source", type=pycrdt.Text)) == expected
        await close_all(clients)

        for svc in pair:
            svc.kill()
        pair[0].start()
        again = await DocClient.open(pair[0].room_url(session), "file")
        assert again.model.get() == expected
        await again.close()
    finally:
        stop_all(pair)
        forwarder.close()


# --- 8. identity ------------------------------------------------------------------------------


SECRET = "scaleout-tests-shared-secret-of-32-bytes"


async def test_signed_identity(cluster: Cluster) -> None:
    """A service with ``YDJANGO_IDENTITY_SECRET`` and no anonymous access: no header, a header
    signed with another secret, an expired header, and one replayed are refused (session 401,
    websocket 4401); a valid ``read`` identity joins but its edits are refused with a
    permission-denied message and change nothing; a valid ``write`` identity edits."""
    svc = cluster.service("identity", YDJANGO_ALLOW_ANONYMOUS="0",
                          YDJANGO_IDENTITY_SECRET=SECRET, YDJANGO_IDENTITY_MAX_AGE="60")
    name = write_text(cluster.root, "identity.txt", "hello\n")
    path = f"api/collaboration/session/{name}"

    def header(method: str, target: str, permission: str = "write",
               secret: str = SECRET) -> dict[str, str]:
        return signed(Identity(f"{permission}-user", permission), secret, method, target)

    session = svc.session(name, TEXT, headers=header("PUT", path))
    url = svc.room_url(session)

    async def refused(make: Any) -> None:
        status, body = svc.request("PUT", path, TEXT, make("PUT", path))
        assert status == 401, body
        client = await DocClient.open(url, "file", headers=make("GET", url), sync=False)
        assert await client.wait_closed() == 4401

    await refused(lambda method, target: None)
    await refused(lambda method, target: header(method, target, secret="another-secret"))

    def expired(method: str, target: str) -> dict[str, str]:
        # signed two minutes ago: older than the 60 s the service accepts (a header signed
        # now and a short max age would make the valid headers expire on a slow machine)
        with mock.patch("django.core.signing.time.time", return_value=time.time() - 120):
            return header(method, target)

    await refused(expired)
    used = {("PUT", path): header("PUT", path), ("GET", url): header("GET", url)}
    assert svc.request("PUT", path, TEXT, used["PUT", path])[0] == 200
    await (await DocClient.open(url, "file", headers=used["GET", url])).close()
    await refused(lambda method, target: used[method, target])  # each used once already

    reader = await DocClient.open(url, "file", headers=header("GET", url, "read"))
    assert reader.model.get() == "hello\n"
    type_into(reader, "forbidden")
    await reader.flush()
    await wait_until(lambda: reader.denied, what="permission denied")
    writer = await DocClient.open(url, "file", headers=header("GET", url))
    assert writer.model.get() == "hello\n"
    type_into(writer, "written")
    await writer.flush()
    assert await writer.save() == "success"
    assert (cluster.root / name).read_text() == "hello\nwritten"
    assert "forbidden" not in writer.model.get()
    await close_all([reader, writer])
    svc.stop()
