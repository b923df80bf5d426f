"""``serve --workers N``: N daphne processes, each room in exactly one of them.

The supervisor listens on the address and hands each connection to the worker that owns its
room (:mod:`jupyter_ydjango.project.router`, :mod:`jupyter_ydjango.rooms.owners`). It
starts each worker with a control socket; a worker owns rooms from the moment it says it is
ready, and every worker is told each time the set of owners changes, so that it closes the
connections of the rooms that moved away from it (their clients reconnect, to the new owner).

* A worker that dies leaves the set at once: its rooms go to the others, each room to the
  worker it ranks next, and the other rooms stay where they are. It is started again, and
  takes its rooms back once ready.
* SIGTTIN adds a worker, SIGTTOU removes the last one (it flushes its rooms and exits):
  either way, only the rooms of the worker that came or went move.
* SIGTERM/SIGINT stop every worker cleanly (each writes its pending log rows and saves its
  files first).

Workers still share rooms through the channel layer (the relay), so ``YDJANGO_REDIS_URL``
is required: a room does end up in two workers for a moment while it moves, or when an HTTP
request touches a room that another worker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from jupyter_ydjango.project.router import Router, listen, watch_control

logger = logging.getLogger(__name__)

#: Seconds a stopping worker gets to flush its rooms before it is killed.
STOP_TIMEOUT = 30.0
#: Seconds between two checks that the workers are alive.
POLL_INTERVAL = 0.2


def check_can_share_rooms() -> None:
    """Several workers need a cross-process channel layer; exit with a clear message if not."""
    if not os.environ.get("YDJANGO_REDIS_URL"):
        sys.exit("serve --workers N (N > 1) needs YDJANGO_REDIS_URL: workers share rooms "
                 "through a Redis channel layer, and a room split between workers without it "
                 "would diverge")


def _forget_metrics(pid: int) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics directory."""
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except Exception as exc:
        logger.warning("cannot drop the metrics of worker process %d: %r", pid, exc)


class Worker:
    """One worker process, its number and its control socket."""

    def __init__(self, index: int, runtime: Path, worker_args: Sequence[str]) -> None:
        self.index = index
        self.ready = False
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.control = ours
        #: Where the worker also listens (a Unix socket), to reach one worker directly.
        self.socket_path = runtime / f"worker-{index}.sock"
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        env = {**os.environ, "YDJANGO_WORKER": str(index)}
        argv = [sys.executable, "-m", "jupyter_ydjango", "serve", "--no-migrate",
                "--control", str(theirs.fileno()), "--unix-socket", str(self.socket_path),
                *worker_args]
        try:
            self.proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), env=env)
        finally:
            theirs.close()

    def tell(self, message: bytes) -> None:
        """Send a control message (dropped if the worker is gone or not reading)."""
        try:
            self.control.send(message)
        except OSError as exc:
            logger.info("worker %d: control message not sent: %r", self.index, exc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def close(self) -> None:
        self.control.close()


class Supervisor:
    """Starts, watches and replaces the workers; keeps the router's owners up to date."""

    def __init__(self, router: Router, runtime: Path, worker_args: Sequence[str]) -> None:
        self.router = router
        self.runtime = runtime
        self.worker_args = list(worker_args)
        self.workers: dict[int, Worker] = {}
        self.stopping = asyncio.Event()
        self._restarts: dict[int, float] = {}

    def start(self, index: int) -> None:
        worker = Worker(index, self.runtime, self.worker_args)
        self.workers[index] = worker
        self.router.controls[index] = worker.control
        watch_control(worker.control,
                      lambda message: self._message(worker, message),
                      lambda: self._gone(worker))

    def _message(self, worker: Worker, message: bytes) -> None:
        if message == b"ready" and self.workers.get(worker.index) is worker:
            worker.ready = True
            logger.info("worker %d (pid %d) serves", worker.index, worker.proc.pid)
            self.publish()

    def _gone(self, worker: Worker) -> None:
        if worker.ready:
            worker.ready = False
            self.publish()

    def publish(self) -> None:
        """Tell the router and every worker which workers own rooms now."""
        members = sorted(i for i, w in self.workers.items() if w.ready)
        if members == self.router.members:
            return
        self.router.set_members(members)
        logger.info("rooms are owned by workers %s", members)
        message = b"m" + json.dumps(members).encode()
        for index in members:
            self.workers[index].tell(message)

    def add(self) -> None:
        index = max(self.workers, default=-1) + 1
        logger.info("adding worker %d", index)
        self.start(index)

    def remove(self) -> None:
        if len(self.workers) <= 1:
            logger.warning("not removing the last worker")
            return
        worker = self.workers.pop(max(self.workers))
        self.router.controls.pop(worker.index, None)
        logger.info("removing worker %d", worker.index)
        worker.ready = False
        self.publish()
        asyncio.get_running_loop().create_task(self._retire(worker))

    async def _retire(self, worker: Worker) -> None:
        worker.stop()
        await asyncio.to_thread(_wait, worker.proc, STOP_TIMEOUT)
        _forget_metrics(worker.proc.pid)
        worker.close()

    async def watch(self) -> None:
        """Start a worker again when it dies, until stopped."""
        while not self.stopping.is_set():
            await asyncio.sleep(POLL_INTERVAL)
            for index, worker in list(self.workers.items()):
                if worker.proc.poll() is None or self.stopping.is_set():
                    continue
                logger.error("worker %d exited with %s; starting it again", index,
                             worker.proc.returncode)
                worker.ready = False
                self.publish()
                # its live gauges (rooms, connections) must no longer count in /metrics
                _forget_metrics(worker.proc.pid)
                worker.close()
                if time.monotonic() - self._restarts.get(index, 0.0) < 1.0:
                    await asyncio.sleep(1.0)  # crash loop: do not spin
                self._restarts[index] = time.monotonic()
                self.start(index)

    async def stop_all(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers.values():
            await asyncio.to_thread(_wait, worker.proc, max(0.1, deadline - time.monotonic()))
            worker.close()


def _wait(proc: subprocess.Popen[bytes], timeout: float) -> None:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def _supervise(host: str, port: int, count: int, worker_args: Sequence[str],
                     runtime: Path) -> None:
    listener = listen(host, port)
    router = Router(listener)
    supervisor = Supervisor(router, runtime, worker_args)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, supervisor.stopping.set)
    loop.add_signal_handler(signal.SIGINT, supervisor.stopping.set)
    loop.add_signal_handler(signal.SIGTTIN, supervisor.add)
    loop.add_signal_handler(signal.SIGTTOU, supervisor.remove)
    for index in range(count):
        supervisor.start(index)
    logger.info("serving on %s:%d with %d workers, each room in one of them", host,
                listener.getsockname()[1], count)
    tasks = [loop.create_task(router.serve()), loop.create_task(supervisor.watch())]
    await supervisor.stopping.wait()
    listener.close()
    for task in tasks:
        task.cancel()
    await supervisor.stop_all()


def supervise(host: str, port: int, workers: int, worker_args: Sequence[str]) -> int:
    """Run ``workers`` worker processes on ``host:port`` until SIGTERM/SIGINT; exit status."""
    # the workers' /metrics add up every worker's counters (prometheus_client multiprocess)
    runtime = Path(tempfile.mkdtemp(prefix="ydjango-workers-"))
    metrics_dir = runtime / "metrics"
    metrics_dir.mkdir()
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    try:
        asyncio.run(_supervise(host, port, workers, worker_args, runtime))
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    return 0
