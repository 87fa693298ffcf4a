"""Per-container serving statistics, recorded inside each serving process (the worker).

Renderer.render (service.py) is the one place every read of a virtual file passes; it calls `Stats.record`
once per render with the caller's resolved container (or None when the caller could not be resolved), the
file, the render time and, for a host fallback, its reason. A container is keyed by its pid namespace's
init as the daemon sees it (pid + start time: pid reuse cannot reproduce both) and remembers the cgroup
directory it was resolved to, from which `pylxcfs status` and the metrics exporter name it.

`snapshot()` is the JSON-able state that the worker publishes (statusdir.Publisher) for `pylxcfs status`
and the exporter; both run in other processes and never talk to the worker. Latencies are kept as fixed
histogram buckets (what Prometheus wants; p50/p99 are read from them to bucket precision) so memory per
container is bounded and independent of the request count. Containers whose init is gone are dropped
by `prune()` (the label cardinality bound of the metrics).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pylxcfs.context import ContainerContext

# Upper bounds (seconds) of the render-latency buckets; a render takes tens of microseconds normally, a cold
# cgroup read or a loaded machine milliseconds. The last bucket (+Inf) is implicit.
BUCKETS_S: tuple[float, ...] = (25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3,
                                50e-3, 100e-3, 250e-3, 1.0)
_BUCKETS_NS: tuple[int, ...] = tuple(int(b * 1e9) for b in BUCKETS_S)
MAX_CONTAINERS = 4096  # a bound even if pruning could not run: the oldest-seen container is dropped
MAX_ERROR_LEN = 300


@dataclass(slots=True)
class FileStats:
    """One file's numbers in one container."""

    requests: int = 0
    sum_ns: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(_BUCKETS_NS) + 1))


@dataclass(slots=True)
class ContainerStats:
    """One container (pid-namespace init) as the worker saw it."""

    init_pid: int
    start_ticks: int
    cgroup: str  # the memory (else cpu, else any) cgroup directory the init was resolved to
    first_seen: float
    last_seen: float = 0.0
    files: dict[str, FileStats] = field(default_factory=dict)
    fallbacks: dict[str, dict[str, int]] | None = None  # file -> reason -> count; made at the first fallback
    last_error: dict[str, Any] | None = None


def _cgroup_of(ctx: ContainerContext) -> str:
    for d in (ctx.memory, ctx.cpu, ctx.cpuacct, ctx.cpuset, ctx.blkio):
        if d is not None:
            return d.path
    return ""


class Stats:
    """Thread-safe counters (the serving thread records, the publisher thread snapshots)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.containers: dict[tuple[int, int], ContainerStats] = {}
        self.host_requests = 0  # callers in the daemon's own pid namespace (served the host file by design)
        self.unresolved: dict[str, dict[str, int]] = {}  # file -> reason -> count, caller's container unknown
        self.gauges: dict[str, Callable[[], int]] = {}
        self.started = clock()

    def add_gauge(self, name: str, fn: Callable[[], int]) -> None:
        """A number read at each snapshot (e.g. the worker's open handles)."""
        self.gauges[name] = fn

    def record_host(self) -> None:
        """A reader in the daemon's pid namespace."""
        with self._lock:
            self.host_requests += 1

    def record(self, path: str, ctx: ContainerContext | None, elapsed_ns: int, reason: str | None = None,
               error: str | None = None) -> None:
        """One render of `path` for a caller in `ctx` (None: not resolved) that took `elapsed_ns`; `reason`
        is set when the host file was served instead (the exception's type name), `error` its message."""
        with self._lock:
            if ctx is None:
                if reason is not None:
                    by = self.unresolved.setdefault(path, {})
                    by[reason] = by.get(reason, 0) + 1
                return
            key = (ctx.init_pid, ctx.init_start_ticks)
            now = self._clock()
            c = self.containers.get(key)
            if c is None:
                if len(self.containers) >= MAX_CONTAINERS:
                    del self.containers[min(self.containers, key=lambda k: self.containers[k].last_seen)]
                c = self.containers[key] = ContainerStats(ctx.init_pid, ctx.init_start_ticks, _cgroup_of(ctx), now)
            c.last_seen = now
            f = c.files.get(path)
            if f is None:
                f = c.files[path] = FileStats()
            f.requests += 1
            f.sum_ns += elapsed_ns
            f.buckets[bisect.bisect_left(_BUCKETS_NS, elapsed_ns)] += 1
            if reason is not None:
                if c.fallbacks is None:
                    c.fallbacks = {}
                by = c.fallbacks.setdefault(path, {})
                by[reason] = by.get(reason, 0) + 1
                c.last_error = {"time": now, "file": path, "reason": reason, "message": (error or "")[:MAX_ERROR_LEN]}

    def prune(self, alive: Callable[[int, int], bool]) -> int:
        """Drop containers whose init is gone (`alive(pid, start_ticks)` False); returns how many."""
        with self._lock:
            keys = list(self.containers)
        gone = [k for k in keys if not alive(*k)]
        with self._lock:
            for k in gone:
                self.containers.pop(k, None)
        return len(gone)

    def snapshot(self, containers: bool = True) -> dict[str, Any]:
        """A JSON-able copy of everything; without `containers`, all but the per-container list (which
        `each_container` then yields one by one, for a writer that streams it)."""
        gauges: dict[str, int] = {}
        for name, fn in list(self.gauges.items()):
            try:
                gauges[name] = int(fn())
            except Exception:  # a gauge must never break publishing
                continue
        with self._lock:
            snap: dict[str, Any] = {
                "started": self.started,
                "host_requests": self.host_requests,
                "unresolved_fallbacks": {p: dict(r) for p, r in self.unresolved.items()},
                "gauges": gauges,
            }
            if containers:
                snap["containers"] = [_container_json(c) for c in self.containers.values()]
            return snap

    def each_container(self) -> Iterator[dict[str, Any]]:
        """The snapshot's per-container entries, each made under the lock when it is asked for (a container
        pruned meanwhile is skipped; one first seen meanwhile waits for the next snapshot)."""
        with self._lock:
            keys = list(self.containers)
        for key in keys:
            with self._lock:
                c = self.containers.get(key)
                if c is None:
                    continue
                item = _container_json(c)
            yield item


def _container_json(c: ContainerStats) -> dict[str, Any]:
    return {"init_pid": c.init_pid, "start_ticks": c.start_ticks, "cgroup": c.cgroup,
            "first_seen": c.first_seen, "last_seen": c.last_seen,
            "files": {p: {"requests": f.requests, "sum_ns": f.sum_ns, "buckets": list(f.buckets)}
                      for p, f in c.files.items()},
            "fallbacks": {p: dict(r) for p, r in c.fallbacks.items()} if c.fallbacks else {},
            "last_error": dict(c.last_error) if c.last_error else None}


def quantile(buckets: list[int], q: float) -> float | None:
    """The upper bound (seconds) of the bucket holding the q-quantile of a bucket-count list (None when empty;
    the +Inf bucket reports the largest finite bound)."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank and n:
            return BUCKETS_S[min(i, len(BUCKETS_S) - 1)]
    return BUCKETS_S[-1]
