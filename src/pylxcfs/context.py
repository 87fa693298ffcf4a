"""The contract between resolution (who is reading) and the views (what they see).

`ContainerContext` says, for one open(), which container the caller is in: its pid namespace's init and
that init's cgroup directory per controller, by meaning. `ViewEnv` carries what every view may use besides
the context: the host root, the daemon options and the explicit per-view state. Every view module in
pylxcfs.views exposes `produce(env: ViewEnv, ctx: ContainerContext) -> str`, which gathers what it needs
(through env.root only) and renders with pure functions. This module holds data only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from pylxcfs.hostfs import HostRoot


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """Daemon flags that change what views show (C lxcfs -l, -u, --enable-cfs)."""

    enable_loadavg: bool = False
    disable_swap: bool = False
    enable_cfs: bool = False


@dataclass(frozen=True, slots=True)
class CgroupDir:
    """The container's cgroup directory for one controller."""

    path: str  # absolute directory, e.g. /sys/fs/cgroup/memory/docker/abc
    v2: bool  # True: cgroup v2 file names (memory.max, cpu.max, cpu.stat, io.stat, cpuset.cpus.effective)
    mount_root: str  # absolute directory where this hierarchy is mounted; ancestor walks stop here


@dataclass(frozen=True, slots=True)
class ContainerContext:
    """Who is reading, resolved at open(). A controller that is not available is None."""

    caller_pid: int  # as seen from the daemon's pid namespace (FUSE request pid)
    init_pid: int  # init of the caller's pid namespace, as seen from the daemon
    init_start_ticks: int  # field 22 of /proc/<init>/stat: clock ticks after boot when init started
    memory: CgroupDir | None
    cpu: CgroupDir | None  # CFS bandwidth: v1 cpu.cfs_quota_us/cfs_period_us; v2 cpu.max
    cpuacct: CgroupDir | None  # CPU usage: v1 cpuacct.usage_percpu/cpuacct.stat; v2 cpu.stat
    cpuset: CgroupDir | None  # v1 cpuset.effective_cpus (or cpuset.cpus); v2 cpuset.cpus.effective
    blkio: CgroupDir | None  # v1 blkio.*; v2 io.stat
    # The container's group in the cgroup2 (unified) hierarchy whatever the controllers: pure v2, or the
    # hybrid "unified" mount. Its {cpu,memory,io}.pressure files (PSI) exist without any controller enabled.
    unified: CgroupDir | None = None


@dataclass(slots=True)
class ViewEnv:
    """Everything a view may use besides the context. `states` holds each stateful view's own state object,
    keyed by the view module's name; only that module reads or writes its entry."""

    root: HostRoot
    opts: ViewOptions
    states: dict[str, Any] = field(default_factory=dict)
    # A memfd of per-container state shared with the daemon's other processes (sharedtable.py; made by the
    # supervisor, inherited by the workers); -1: each view that needs one makes a private one.
    shared_fd: int = -1


class Producer(Protocol):
    """The signature every view module's `produce` has."""

    def __call__(self, env: ViewEnv, ctx: ContainerContext) -> str: ...
