"""The ONE list of virtual files the daemon serves (design.md §2).

Every other layer (the FUSE tree, the toolkit's mount plans, the tests) derives its list of files from
VIEW_PATHS, so adding a file touches one row here and one render module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ViewSpec:
    """One virtual file: its path in our tree and the host file it replaces (same relative path)."""

    path: str  # e.g. "proc/meminfo"; the container sees it at "/" + path
    module: str  # pylxcfs.views.<module> exposes produce(env: ViewEnv, ctx: ContainerContext) -> str

    @property
    def container_path(self) -> str:
        """Where the file is bind-mounted inside a container ("/proc/meminfo")."""
        return "/" + self.path


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("proc/cpuinfo", "cpuinfo"),
    ViewSpec("proc/diskstats", "diskstats"),
    ViewSpec("proc/loadavg", "loadavg"),
    ViewSpec("proc/meminfo", "meminfo"),
    ViewSpec("proc/partitions", "partitions"),
    ViewSpec("proc/stat", "stat"),
    ViewSpec("proc/swaps", "swaps"),
    ViewSpec("proc/uptime", "uptime"),
    ViewSpec("sys/devices/system/cpu/online", "sys_cpu_online"),
)

VIEW_PATHS: tuple[str, ...] = tuple(v.path for v in VIEWS)


def directories() -> dict[str, tuple[str, ...]]:
    """Directory path ("" is the root) -> sorted child names, derived from VIEW_PATHS."""
    tree: dict[str, set[str]] = {"": set()}
    for path in VIEW_PATHS:
        parts = path.split("/")
        for i in range(len(parts)):
            parent = "/".join(parts[:i])
            tree.setdefault(parent, set()).add(parts[i])
            if i < len(parts) - 1:
                tree.setdefault("/".join(parts[: i + 1]), set())
    return {d: tuple(sorted(children)) for d, children in tree.items()}
