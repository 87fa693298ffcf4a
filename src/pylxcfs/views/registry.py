"""The ONE list of what the daemon serves (design.md §2): virtual files and per-container directory views.

A row is (path, module, function, arguments): the file at `path` is what
`pylxcfs.views.<module>.<function>(env, ctx, *arguments)` returns, so several files rendered by one rule (the
cpu lists online/possible/present/offline, the three /proc/pressure files) are rows of one module, not copies of
it. A row marked `host_optional` is served only where the host has the file (the Renderer checks once at start),
so a kernel without PSI gets no proc/pressure in our tree and no mount over its /proc/pressure. A `TreeSpec`
row makes a directory a per-container view of the host directory of the same path: its entries are the host's (passed
through read-only, symlinks included) except those the module's filter hides from the caller, and the file rows
below it replace the host files of the same name.

Every other layer derives its lists from here: the FUSE tree (fuse/ops.py), the Renderer (service.py, which
refuses to start when a row names a module or function that does not exist), the toolkit's mount plans
(ct/plan.py: `bind_targets`), the tests, tools/capture_fixture.py and the bench.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """One virtual file: its path in our tree (the same as the host file it replaces) and how it is rendered."""

    path: str  # e.g. "proc/meminfo"; the container sees it at "/" + path
    module: str  # pylxcfs.views.<module>
    function: str = "produce"  # module.<function>(env: ViewEnv, ctx: ContainerContext, *args) -> str
    args: tuple[str, ...] = ()
    # True: served only where the host has the file (/proc/pressure needs CONFIG_PSI and no psi=0), so the daemon's
    # tree, and with it every mount plan that finds its sources there, leaves out a file the container's /proc
    # would not have either. The Renderer decides once at start by reading the host file (service.py).
    host_optional: bool = False

    @property
    def container_path(self) -> str:
        """Where the file appears inside a container ("/proc/meminfo")."""
        return "/" + self.path


@dataclass(frozen=True, slots=True)
class TreeSpec:
    """A directory served as a per-container view of the host directory at the same path.

    `filter` names `pylxcfs.views.<module>.<filter>(env, ctx, names) -> frozenset[str]`: which of the host
    directory's top-level entry names the caller does NOT see (anything below a visible entry is passed
    through). Host callers, and callers whose container cannot be resolved, see the host directory.
    """

    path: str  # e.g. "sys/devices/system/cpu"
    module: str
    filter: str

    @property
    def container_path(self) -> str:
        return "/" + self.path


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("proc/cpuinfo", "cpuinfo"),
    ViewSpec("proc/diskstats", "diskstats"),
    ViewSpec("proc/loadavg", "loadavg"),
    ViewSpec("proc/meminfo", "meminfo"),
    ViewSpec("proc/partitions", "partitions"),
    ViewSpec("proc/pressure/cpu", "pressure", "produce_resource", ("cpu",), host_optional=True),
    ViewSpec("proc/pressure/io", "pressure", "produce_resource", ("io",), host_optional=True),
    ViewSpec("proc/pressure/memory", "pressure", "produce_resource", ("memory",), host_optional=True),
    ViewSpec("proc/stat", "stat"),
    ViewSpec("proc/swaps", "swaps"),
    ViewSpec("proc/uptime", "uptime"),
    ViewSpec("proc/vmstat", "vmstat"),
    ViewSpec("sys/devices/system/cpu/offline", "sys_cpu", "produce_list", ("offline",)),
    ViewSpec("sys/devices/system/cpu/online", "sys_cpu", "produce_list", ("online",)),
    ViewSpec("sys/devices/system/cpu/possible", "sys_cpu", "produce_list", ("possible",)),
    ViewSpec("sys/devices/system/cpu/present", "sys_cpu", "produce_list", ("present",)),
)

TREES: tuple[TreeSpec, ...] = (
    TreeSpec("sys/devices/system/cpu", "sys_cpu", "hidden_entries"),
)

VIEW_PATHS: tuple[str, ...] = tuple(v.path for v in VIEWS)
TREE_PATHS: tuple[str, ...] = tuple(t.path for t in TREES)


def tree_of(path: str) -> TreeSpec | None:
    """The TreeSpec whose directory is `path` or contains it, or None."""
    for t in TREES:
        if path == t.path or path.startswith(t.path + "/"):
            return t
    return None


def bind_targets() -> tuple[tuple[str, bool], ...]:
    """What a container gets bound, as (path, is_directory): every tree's directory, and every file that is not
    inside a tree (those come with their directory). This is what the hook, `remount` and the tests bind."""
    out: list[tuple[str, bool]] = [(t.path, True) for t in TREES]
    out += [(v.path, False) for v in VIEWS if tree_of(v.path) is None]
    return tuple(sorted(out))


def directories(paths: tuple[str, ...] = VIEW_PATHS) -> dict[str, tuple[str, ...]]:
    """Directory path ("" is the root) -> sorted child names of the static tree (the files `paths`, default every
    row, and the trees' roots). A directory exists only because a served file is in it (proc/pressure)."""
    tree: dict[str, set[str]] = {"": set()}
    for path in (*paths, *TREE_PATHS):
        parts = path.split("/")
        for i in range(len(parts)):
            parent = "/".join(parts[:i])
            tree.setdefault(parent, set()).add(parts[i])
            if i < len(parts) - 1:
                tree.setdefault("/".join(parts[: i + 1]), set())
    for t in TREE_PATHS:
        tree.setdefault(t, set())
    return {d: tuple(sorted(children)) for d, children in tree.items()}
