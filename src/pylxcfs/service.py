"""The binding-neutral heart of the daemon: (virtual path, caller pid) -> the bytes that caller reads.

The FUSE front-ends (fuse/) call only this. It resolves the caller's container (procs/resolve.py), calls
the registry row's function (views/registry.py names module, function and arguments), and on any failure
serves the host file unchanged (LXCFS behaviour): a caller in the daemon's own pid namespace and a vanished
pid are expected and logged at DEBUG; anything else gets ONE WARNING line naming the file, pid and reason,
rate-limited per (view, exception type). It never raises for a known path. A row whose module or function
does not exist is a RegistryError when the Renderer is built, i.e. at daemon start (cli.py builds one before
mounting), never a silent host fallback. For directory views it says which host entries a caller does not
see (`hidden`) and hands out the host directory they pass through from (`host_tree`). It does not know
about FUSE.

Every render is counted per container (stats.Stats: requests, render time, fallbacks by reason, last
error); with a status directory (statusdir.py) the serving process publishes those numbers about once a
second for `pylxcfs status` and the metrics exporter.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from pylxcfs import __version__
from pylxcfs.context import ContainerContext, Producer, ViewEnv, ViewOptions
from pylxcfs.errors import NotInContainer, ParseError, ProcessGone, RegistryError
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.hosttree import HostTree
from pylxcfs.log import RateLimited
from pylxcfs.parse.pid import parse_stat_starttime
from pylxcfs.procs.resolve import PidResolver, Resolver
from pylxcfs.stats import Stats
from pylxcfs.views.registry import TREE_PATHS, TREES, VIEWS, ViewSpec

TreeFilter = Callable[[ViewEnv, ContainerContext, Iterable[str]], frozenset[str]]

__all__ = ["Renderer", "ViewOptions", "load_registry", "load_view"]

log = logging.getLogger(__name__)

WARN_INTERVAL_S = 60.0  # at most one warning per (view, exception type) per minute; the rest are counted


def _function(module: str, function: str, what: str) -> Callable[..., Any]:
    """pylxcfs.views.<module>.<function>, or RegistryError (raised at daemon start, never while serving)."""
    name = f"pylxcfs.views.{module}"
    try:
        mod = importlib.import_module(name)
    except Exception as e:
        raise RegistryError(f"{what}: cannot import {name} ({type(e).__name__}: {e})") from e
    fn = getattr(mod, function, None)
    if not callable(fn):
        raise RegistryError(f"{what}: {name} has no function {function}()")
    return fn  # type: ignore[no-any-return]


def load_view(spec: ViewSpec) -> Producer:
    """The row's renderer as produce(env, ctx): its module's function with the row's arguments bound."""
    fn = _function(spec.module, spec.function, spec.path)
    args = spec.args
    if not args:
        p: Producer = fn
        return p

    def bound(env: ViewEnv, ctx: ContainerContext) -> str:
        return fn(env, ctx, *args)  # type: ignore[no-any-return]

    return bound


def load_registry() -> tuple[dict[str, Producer], dict[str, TreeFilter]]:
    """Every row's renderer and every tree's filter; RegistryError names the first row that cannot be served."""
    producers = {v.path: load_view(v) for v in VIEWS}
    filters: dict[str, TreeFilter] = {t.path: _function(t.module, t.filter, t.path) for t in TREES}
    return producers, filters


class Renderer:
    """Renders virtual files for callers."""

    def __init__(self, root: HostRoot, opts: ViewOptions, resolver: PidResolver | None = None,
                 status_dir: str | None = None, shared_fd: int = -1) -> None:
        self.root = root
        self.opts = opts
        self.resolver: PidResolver = resolver if resolver is not None else Resolver(root)
        self.env = ViewEnv(root=root, opts=opts, shared_fd=shared_fd)
        self._producers, self._filters = load_registry()
        # host_optional rows (proc/pressure/*) only where the host has the file, decided once here: the FUSE tree
        # (and so every mount plan, which skips sources the daemon does not serve) follows this list.
        self._paths = tuple(v.path for v in VIEWS if not v.host_optional or self._host_has(v.path))
        self._trees = {t: HostTree(self._host_abspath(t)) for t in TREE_PATHS}
        self._warnings = RateLimited(log, WARN_INTERVAL_S)
        self.fallbacks: dict[tuple[str, str], int] = {}  # (view path, reason) -> count, for tests and stats
        self._sampler: Any = None
        self.stats = Stats()
        self.status_dir = status_dir
        self._publisher: Any = None
        self._closing = False

    def paths(self) -> tuple[str, ...]:
        """Every virtual file path served ("proc/meminfo", ...): the registry's rows, less host_optional rows whose
        host file is missing or unreadable."""
        return self._paths

    def _host_has(self, path: str) -> bool:
        """The host's file exists and reads (without PSI /proc/pressure is absent, with psi=0 reads fail)."""
        try:
            self.host_bytes(path)
        except OSError as e:
            log.info("%s: host file unavailable (%s); not served", path, e.strerror or e)
            return False
        return True

    def tree_paths(self) -> tuple[str, ...]:
        """Every per-container directory view ("sys/devices/system/cpu", ...)."""
        return TREE_PATHS

    def _host_abspath(self, path: str) -> str:
        top, _, rest = path.partition("/")
        base = self.root.proc if top == "proc" else self.root.sys
        return f"{base}/{rest}"

    def host_bytes(self, path: str) -> bytes:
        """The host's own file for a virtual path (the fallback content)."""
        return read_bytes(self._host_abspath(path))

    def host_tree(self, tree: str) -> HostTree:
        """The host directory behind a directory view (what its entries pass through from)."""
        return self._trees[tree]

    def hidden(self, tree: str, caller_pid: int, names: Iterable[str]) -> frozenset[str]:
        """Which of `names` (top-level entries of the host directory `tree`) the caller does not see. Host callers
        and callers whose container cannot be resolved see everything (as they get the host files)."""
        try:
            return self._filters[tree](self.env, self.resolver.resolve(caller_pid), names)
        except NotInContainer:
            return frozenset()
        except ProcessGone as e:
            self._count(tree, "ProcessGone")
            log.debug("%s: pid %d: %s; showing the host directory", tree, caller_pid, e)
        except Exception as e:
            self._fell_back(tree, caller_pid, e, what="showing the host directory")
        return frozenset()

    def context(self, caller_pid: int) -> ContainerContext:
        """The caller's resolved context (raises NotInContainer / ProcessGone / others); for tools and tests."""
        return self.resolver.resolve(caller_pid)

    def render(self, path: str, caller_pid: int) -> bytes:
        """What `caller_pid` should read at `path`; host bytes on any failure. Never raises for known paths
        (an unknown path raises KeyError: the FUSE layer answers ENOENT before calling)."""
        produce = self._producers[path]
        t0 = time.perf_counter_ns()
        ctx: ContainerContext | None = None
        reason = ""
        err = ""
        try:
            ctx = self.resolver.resolve(caller_pid)
            data = produce(self.env, ctx).encode()
            self.stats.record(path, ctx, time.perf_counter_ns() - t0)
            return data
        except NotInContainer:
            # Host callers get the host file unchanged (LXCFS would use their own cgroup).
            self.stats.record_host()
        except ProcessGone as e:
            reason, err = "ProcessGone", str(e)
            self._count(path, reason)
            log.debug("%s: pid %d: %s; serving the host file", path, caller_pid, e)
        except Exception as e:
            reason, err = type(e).__name__, str(e)
            self._fell_back(path, caller_pid, e)
        try:
            data = self.host_bytes(path)
        except OSError as e:
            self._fell_back(path, caller_pid, e, what="host file unreadable, serving an empty file")
            reason, err, data = "HostUnreadable", str(e), b""
        if reason:
            self.stats.record(path, ctx, time.perf_counter_ns() - t0, reason, err)
        return data

    def _count(self, path: str, reason: str) -> int:
        key = (path, reason)
        n = self.fallbacks.get(key, 0) + 1
        self.fallbacks[key] = n
        return n

    def _fell_back(self, path: str, pid: int, e: BaseException, what: str = "serving the host file") -> None:
        kind = type(e).__name__
        n = self._count(path, kind)
        self._warnings.warning((path, kind), "%s: pid %d: %s: %s; %s (fallback #%d of this kind)",
                               path, pid, kind, e, what, n)

    def start(self) -> None:
        """Start background work (the loadavg sampler); call in the serving process, after any fork."""
        if self.opts.enable_loadavg and self._sampler is None:
            from pylxcfs.sampler import LoadavgSampler

            self._sampler = LoadavgSampler(self.root, self.env)
            self._sampler.start()
        if self.status_dir is not None and self._publisher is None:
            from pylxcfs.statusdir import WORKER_PREFIX, Publisher

            self._publisher = Publisher(self.status_dir, f"{WORKER_PREFIX}{os.getpid()}.json", self.snapshot,
                                        prune=self.prune_stats)
            self._publisher.start()

    def _init_alive(self, pid: int, start_ticks: int) -> bool:
        try:
            stat = read_bytes(self.root.proc_path(f"{pid}/stat")).decode()
            return parse_stat_starttime(stat) == start_ticks
        except (OSError, ParseError, UnicodeDecodeError):
            return False

    def prune_stats(self) -> int:
        """Forget containers whose init is gone (bounded label cardinality for the metrics)."""
        return self.stats.prune(self._init_alive)

    def snapshot(self) -> dict[str, Any]:
        """What this serving process publishes: identity, options and the per-container stats (streamed by
        the status writer, see statusdir.JsonArray)."""
        from pylxcfs.statusdir import JsonArray

        snap = self.stats.snapshot(containers=False)
        snap["containers"] = JsonArray(self.stats.each_container)
        layout = getattr(self.resolver, "_layout", None)
        snap.update(pid=os.getpid(), version=__version__, time=time.time(), exited=self._closing,
                    options={"enable_loadavg": self.opts.enable_loadavg, "disable_swap": self.opts.disable_swap,
                             "enable_cfs": self.opts.enable_cfs},
                    cgroup_layout=layout.layout.value if layout is not None else None,
                    host_root=self.root.top)
        return snap

    def close(self) -> None:
        """Stop background work."""
        if self._sampler is not None:
            self._sampler.stop()
            self._sampler = None
        if self._publisher is not None:
            self._closing = True
            self._publisher.stop(final=True)
            self._publisher = None
