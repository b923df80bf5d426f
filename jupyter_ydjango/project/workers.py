"""``serve --workers N``: N daphne processes, each accepting connections on a socket of its own.

The supervisor reserves the address and starts each worker with a socket bound to it (daphne
``--fd``; see :mod:`jupyter_ydjango.project.listeners`): the kernel spreads new connections over the
workers. A worker that dies is started again, with a new socket; SIGTERM/SIGINT stop every
worker cleanly (each flushes its rooms). Workers share rooms through the channel layer, so
``YDJANGO_REDIS_URL`` is required.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

from jupyter_ydjango.project.listeners import Listeners

logger = logging.getLogger(__name__)

#: Seconds a stopping worker gets to flush its rooms before it is killed.
STOP_TIMEOUT = 30.0


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


def supervise(host: str, port: int, workers: int, worker_args: Sequence[str]) -> int:
    """Run ``workers`` worker processes on ``host:port`` until SIGTERM/SIGINT; exit status."""
    listeners = Listeners(host, port)
    # the workers' /metrics add up every worker's counters (prometheus_client multiprocess)
    metrics_dir = tempfile.mkdtemp(prefix="ydjango-metrics-")
    os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics_dir)
    stopping = False

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def start(index: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "YDJANGO_WORKER": str(index)}
        with listeners.for_worker() as fd:
            argv = [sys.executable, "-m", "jupyter_ydjango", "serve", "--fd", str(fd),
                    "--no-migrate", *worker_args]
            return subprocess.Popen(argv, pass_fds=(fd,), env=env)

    procs = {index: start(index) for index in range(workers)}
    logger.info("serving on %s:%d with %d workers (%s)", host, listeners.port, workers,
                "a socket each" if listeners.reuseport else "one shared socket")
    restarts: dict[int, float] = {}
    while not stopping:
        time.sleep(0.2)
        for index, proc in list(procs.items()):
            if proc.poll() is None or stopping:
                continue
            logger.error("worker %d exited with %s; starting it again", index, proc.returncode)
            # its live gauges (rooms, connections) must no longer count in /metrics
            _forget_metrics(proc.pid)
            if time.monotonic() - restarts.get(index, 0.0) < 1.0:
                time.sleep(1.0)  # crash loop: do not spin
            restarts[index] = time.monotonic()
            procs[index] = start(index)
    for proc in procs.values():
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    listeners.close()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
