"""What the benchmarks share: processes, CPU time, statistics, tables, node, the run itself.

``fanout.py``, ``scaleout.py`` and ``compare.py`` import this module. Only the standard
library is imported at module level: ``compare.py`` draws its charts with the interpreter of
another environment, which has none of the project's packages.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The tests' node packages (yjs, y-websocket, ws), which the node clients load.
JS_DIR = ROOT / "tests" / "support" / "js"
JS_PACKAGES = ("yjs", "y-websocket", "y-protocols", "lib0", "ws")
_TICK = os.sysconf("SC_CLK_TCK")


def progress(tag: str, text: str) -> None:
    """One progress line on stderr: ``[tag] text``."""
    print(f"[{tag}] {text}", file=sys.stderr, flush=True)


# --- processes ------------------------------------------------------------------------------


def self_cpu() -> float:
    """CPU seconds (user + system) used by this benchmark process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int | None) -> float:
    """CPU seconds (user + system) used so far by another live process (Linux ``/proc``)."""
    if pid is None:
        return math.nan
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return math.nan
    fields = stat[stat.rindex(")") + 2:].split()  # fields 3.. of proc(5); utime=14, stime=15
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_memory(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` (the peak) of a live process, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values


def descendants(pid: int) -> list[int]:
    """The live processes ``pid`` started, the ones they started, and so on (``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        found = children.get(todo.pop(), [])
        out += found
        todo += found
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a live process and its live descendants (a server and its
    worker processes)."""
    own = proc_cpu(pid)
    return own + sum(c for c in map(proc_cpu, descendants(pid)) if not math.isnan(c))


def tree_memory(pid: int) -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of a live process plus those of its live descendants, in MB.
    The peak is the sum of each process's own peak: at most that was ever in use at once."""
    total = proc_memory(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            for key, value in proc_memory(child).items():
                total[key] += value
    return total


def loadavg() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def start_service(env: dict[str, str], log: Path) -> Any:
    """A ``python -m jupyter_ydjango serve`` process on a free port, on an already migrated
    database (``tests/support/daphne_servers.py``'s ``Server``, once it listens)."""
    from daphne_servers import Server, serve_command

    return Server([*serve_command(), "--no-migrate"], env, log)


@dataclass
class CpuTime:
    """Wall and CPU seconds over some windows: this process, the node clients, the servers."""

    wall: float = 0.0
    bench: float = 0.0
    node: float = 0.0
    servers: float = 0.0

    def add(self, other: CpuTime) -> None:
        """Add another window's times to these."""
        self.wall += other.wall
        self.bench += other.bench
        self.node += other.node
        self.servers += other.servers

    def as_dict(self, digits: int = 3, servers: str = "servers") -> dict[str, float]:
        """The times, rounded; the servers' key is ``{servers}_cpu_s``."""
        return {"wall_s": round(self.wall, digits), "bench_cpu_s": round(self.bench, digits),
                "node_cpu_s": round(self.node, digits),
                f"{servers}_cpu_s": round(self.servers, digits)}


@dataclass
class CpuMeter:
    """Measures windows of a run into ``CpuTime``: the node process and the servers are named
    by functions, as they may start (or stop) after the meter is made."""

    node_pid: Callable[[], int | None]
    server_pids: Callable[[], list[int]]

    def snapshot(self) -> tuple[float, float, float, float]:
        return (time.monotonic(), self_cpu(), proc_cpu(self.node_pid()),
                sum(proc_cpu(pid) for pid in self.server_pids()))

    @contextlib.contextmanager
    def window(self, into: CpuTime) -> Iterator[None]:
        """Add the wall and CPU time of the ``with`` block to ``into``; the node's only if
        its process was there at both ends."""
        start = self.snapshot()
        try:
            yield
        finally:
            end = self.snapshot()
            into.wall += end[0] - start[0]
            into.bench += end[1] - start[1]
            if not math.isnan(end[2] - start[2]):
                into.node += end[2] - start[2]
            into.servers += end[3] - start[3]


# --- statistics -----------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median and min-max of one statistic over the runs."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """``spread`` of the values that are numbers, with their count (``n``) and the values."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0, "values": []}
    return {**spread(kept), "n": len(kept), "values": [round(v, 4) for v in kept]}


def fmt_spread(s: dict[str, Any] | None, digits: int = 1) -> str:
    """``median (min-max)``; the median alone if they are equal; ``-`` if there is none."""
    if not s or s.get("n") == 0:
        return "-"
    if s["min"] == s["max"]:
        return f"{s['median']:.{digits}f}"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def first_arrivals(targets: Sequence[float], times: Sequence[float],
                   lengths: Sequence[float]) -> list[float | None]:
    """For each target length, in increasing order, the time of a receiver's first change
    (``times`` and ``lengths`` in arrival order) whose text length reached it; None if none
    did."""
    out: list[float | None] = []
    j = 0
    for target in targets:
        while j < len(lengths) and lengths[j] < target:
            j += 1
        out.append(times[j] if j < len(lengths) else None)
    return out


def driver_receipts(sent: Sequence[dict[str, Any]],
                    changes: Sequence[dict[str, Any]]) -> list[float | None]:
    """``tests/support/js/driver.mjs``'s records: for each character a writer sent (``t``,
    ``length_after``), when one receiver's text first held it, from that receiver's watched
    changes (``t``, ``length``, ``local``); None if it never did."""
    remote = sorted((c for c in changes if not c["local"]), key=lambda c: c["t"])
    return first_arrivals([s["length_after"] for s in sent], [c["t"] for c in remote],
                          [c["length"] for c in remote])


def schedule_slip(times: Sequence[float], interval_ms: float) -> float:
    """How late a drift-free schedule of one event every ``interval_ms`` ran at worst."""
    return max(t - (times[0] + i * interval_ms) for i, t in enumerate(times))


# --- output ---------------------------------------------------------------------------------


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    body = [line(cells[0]), rule] + [line(row) for row in cells[1:]]
    return "\n".join([title, "=" * len(title), *body, ""])


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by ``None`` (valid JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, NaN and infinities as null."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite(data), indent=1) + "\n")


# --- node -----------------------------------------------------------------------------------


def ensure_node_modules() -> None:
    """``npm ci`` in tests/support/js if its packages are missing (as the tests' fixture does)."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"node/npm not available: {', '.join(missing)} not found on PATH")
    modules = JS_DIR / "node_modules"
    if not all((modules / pkg / "package.json").is_file() for pkg in JS_PACKAGES):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, check=True)


def node_version() -> str:
    """``node --version``."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return node.stdout.strip()


# --- the run --------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM stop the run at once (as a ``KeyboardInterrupt``), so that the
    caller's cleanup stops the servers."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def close_loop(loop: asyncio.AbstractEventLoop, timeout: float = 3.0) -> None:
    """Cancel what is left on ``loop`` (after an interruption), wait briefly, close it."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    with contextlib.suppress(BaseException):
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


def chosen(parser: argparse.ArgumentParser, only: str, known: Sequence[str],
           what: str) -> list[str]:
    """The names of a comma-separated ``--only`` option; exits through ``parser`` on a name
    not in ``known`` (``what`` names them in the message: "sections", "attacks")."""
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = set(names) - set(known)
    if unknown:
        parser.error(f"unknown {what} {', '.join(sorted(unknown))} (known: "
                     f"{', '.join(known)})")
    return names

