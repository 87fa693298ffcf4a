"""cgroup layout detection (v1 "legacy", hybrid, v2 "unified") from mountinfo TEXT, never from statfs magic
(design.md §5 pitfall 2), so a fixture tree can claim any layout; and the pure mapping from a process's
/proc/<pid>/cgroup lines to per-controller directories.

Pure: parsed records in, records out. The caller (procs/resolve.py) does the reads.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pylxcfs.context import CgroupDir
from pylxcfs.parse.mountinfo import Mount
from pylxcfs.parse.pid import CgroupLine


class Layout(enum.Enum):
    """Which cgroup versions the host mounts."""

    LEGACY = "v1"  # v1 hierarchies only
    HYBRID = "hybrid"  # v1 controllers plus a cgroup2 mount (systemd's "hybrid": /sys/fs/cgroup/unified)
    UNIFIED = "v2"  # cgroup2 only


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """One mounted cgroup hierarchy."""

    mount_dir: str  # where we read it (rebased into the HostRoot)
    root: str  # mountinfo field 4: the cgroup shown at mount_dir ("/" unless mounted from a cgroup ns)
    v2: bool
    controllers: frozenset[str]  # v1: from the super options ("cpu", "cpuacct"); v2: filled by the caller


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """The host's hierarchies, indexed for the per-open mapping."""

    layout: Layout
    v1: Mapping[str, Hierarchy]  # controller name -> its v1 hierarchy
    unified: Hierarchy | None


# v1 controller names that can appear in cgroupfs super options (kernel/cgroup/cgroup.c cgroup_subsys[]).
_V1_CONTROLLERS = frozenset(
    {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls", "blkio", "perf_event",
     "net_prio", "hugetlb", "pids", "rdma", "misc"}
)


def detect_layout(mounts: Iterable[Mount], rebase: Callable[[str], str | None],
                  unified_controllers: Callable[[str], frozenset[str] | None]) -> CgroupLayout:
    """Classify the cgroup mounts. `rebase` maps a mount point to the directory we read (None: ignore the
    mount); `unified_controllers(dir)` returns the cgroup2 root's cgroup.controllers (None: unreadable,
    which is taken as "all controllers")."""
    v1: dict[str, Hierarchy] = {}
    unified: Hierarchy | None = None
    for m in mounts:
        if m.fstype not in ("cgroup", "cgroup2"):
            continue
        d = rebase(m.mount_point)
        if d is None:
            continue
        if m.fstype == "cgroup2":
            if unified is None:
                ctrls = unified_controllers(d)
                unified = Hierarchy(d, m.root, True, ctrls if ctrls is not None else frozenset(_V2_ALL))
            continue
        ctrls_v1 = frozenset(o for o in m.super_options if o in _V1_CONTROLLERS)
        h = Hierarchy(d, m.root, False, ctrls_v1)
        for c in ctrls_v1:
            v1.setdefault(c, h)
    if v1 and unified is not None:
        layout = Layout.HYBRID
    elif unified is not None:
        layout = Layout.UNIFIED
    else:
        layout = Layout.LEGACY
    return CgroupLayout(layout, v1, unified)


_V2_ALL = ("cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc")

# Our meaning-level controllers -> (v1 controller name, v2 controller that must be enabled or None).
# v2 has no cpuacct: CPU usage is cpu.stat, present in every cgroup2 directory (cgroup-v2.rst "Core
# Interface Files"); v2 renames blkio to io.
CONTROLLERS: dict[str, tuple[str, str | None]] = {
    "memory": ("memory", "memory"),
    "cpu": ("cpu", "cpu"),
    "cpuacct": ("cpuacct", None),
    "cpuset": ("cpuset", "cpuset"),
    "blkio": ("blkio", "io"),
}


def _join(h: Hierarchy, path: str) -> CgroupDir:
    # Paths in /proc/<pid>/cgroup are relative to our cgroup namespace root; a mount made from inside a
    # cgroup namespace shows `root` at mount_dir, so strip that prefix.
    if h.root != "/" and (path == h.root or path.startswith(h.root + "/")):
        path = path[len(h.root):] or "/"
    # LXCFS (lxcfs 5.0 cgroup_fuse.c prune_init_scope): a systemd container's init sits in
    # <cg>/init.scope; the container's limits are on <cg>.
    if path.endswith("/init.scope"):
        path = path[: -len("/init.scope")] or "/"
    full = h.mount_dir if path in ("/", "") else h.mount_dir + path
    return CgroupDir(path=full, v2=h.v2, mount_root=h.mount_dir)


def map_controllers(layout: CgroupLayout, lines: Iterable[CgroupLine]) -> dict[str, CgroupDir | None]:
    """Directory per meaning-level controller for a process whose /proc/<pid>/cgroup is `lines`.
    On hybrid hosts the v1 controllers win; a controller found nowhere maps to None. The extra key "unified"
    is the process's cgroup2 group (its "0::" line) on any host that mounts cgroup2, controllers or not."""
    v1_paths: dict[str, str] = {}
    v2_path: str | None = None
    for ln in lines:
        if ln.hierarchy_id == 0 and not ln.controllers:
            v2_path = ln.path
        else:
            for c in ln.controllers:
                v1_paths[c] = ln.path
    out: dict[str, CgroupDir | None] = {}
    u = layout.unified
    # One CgroupDir per (hierarchy, path): cpu and cpuacct share one v1 hierarchy ("cpu,cpuacct") and every
    # v2 meaning shares the unified one; each namespace's dirs live in every worker's resolver cache.
    made: dict[tuple[str, str], CgroupDir] = {}

    def join(h: Hierarchy, path: str) -> CgroupDir:
        key = (h.mount_dir, path)
        d = made.get(key)
        if d is None:
            d = made[key] = _join(h, path)
        return d

    for meaning, (v1name, v2name) in CONTROLLERS.items():
        h = layout.v1.get(v1name)
        if h is not None and v1name in v1_paths:
            out[meaning] = join(h, v1_paths[v1name])
        elif u is not None and v2_path is not None and (
            (v2name is not None and v2name in u.controllers)
            or (v2name is None and layout.layout is Layout.UNIFIED)
        ):
            out[meaning] = join(u, v2_path)
        else:
            out[meaning] = None
    out["unified"] = join(u, v2_path) if u is not None and v2_path is not None else None
    return out
