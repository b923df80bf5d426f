"""Remote mode in front of ``serve --workers 2``: two Jupyter servers proxy their users to one
service whose workers each hold their own rooms.

The service runs on a private ``redis-server`` and a PostgreSQL database of this module's
own; clients are pycrdt + jupyter_ydoc clients (:class:`notebook_client.DocClient`) that
open the notebook through a Jupyter server, as JupyterLab does. Which worker holds a room's
connections is each worker's ``/healthz``, asked on its own Unix socket. Without Redis or
PostgreSQL the tests skip and say why.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from backing_services import (
    PgDatabase,
    RedisServer,
    children,
    kill,
    postgres_user,
    redis_server_binary,
    serving_workers,
    worker_health,
)
from jupyter_servers import TOKEN, JupyterServer
from nbformat.v4 import new_code_cell, new_notebook
from remote_deployment import Remote, append_source, open_notebook

pytestmark = [pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Remote,
                                                                         JupyterServer]]:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc (Linux only)")
    user, why = postgres_user()
    if user is None:
        pytest.skip(why)
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (a private Redis is started per module)")
    tmp = tmp_path_factory.mktemp("remote-workers")
    redis = RedisServer(tmp / "redis")
    db = PgDatabase(user, "ydjango_remote_workers")
    remote = second = None
    seen: set[int] = set()
    try:
        remote = Remote(tmp, service_args=("--workers", "2"), YDJANGO_DATABASE_URL=db.url(),
                        YDJANGO_REDIS_URL=redis.url, YDJANGO_RELAY_HEARTBEAT="1",
                        YDJANGO_ROOM_UNLOAD_DELAY="1")
        second = remote.another_jupyter("jupyter-2")
        yield remote, second
    finally:
        for jupyter in (second, remote and remote.jupyter):
            if jupyter is not None:
                jupyter.stop()
        if remote is not None:
            seen |= set(children(remote.service.proc.pid))
            remote.service.stop()
            for pid in seen:
                kill(pid, only_if="jupyter_ydjango")
        redis.stop()
        db.drop()


async def test_two_jupyter_servers_share_a_room_held_by_one_worker(
        deployment: tuple[Remote, JupyterServer]) -> None:
    """Two clients through each Jupyter server edit one notebook: every edit reaches all
    four, the save holds all of them, and all four connections are held by one worker."""
    remote, second = deployment
    workers = serving_workers(remote.service.proc.pid, 2)
    path: Path = remote.root / "shared.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1", id="code-1")]), path)
    clients = [await open_notebook(jupyter, "shared.ipynb", token)
               for jupyter in (remote.jupyter, second)
               for token in (TOKEN, "writer-token")]
    try:
        for n, client in enumerate(clients):
            append_source(client.model, 0, f" + {n}")
        for client in clients:
            await client.wait_for(lambda m: all(f" + {n}" in str(m.ycells[0]["source"])
                                                for n in range(4)), 20)
        held = {n: worker_health(pid)["connections"] for n, pid in workers.items()}
        assert sorted(held.values()) == [0, 4], held
        assert await clients[0].save() == "success"
        saved = nbformat.read(path, as_version=4).cells[0].source
        assert all(f" + {n}" in saved for n in range(4)), saved
    finally:
        for client in clients:
            await client.close()
