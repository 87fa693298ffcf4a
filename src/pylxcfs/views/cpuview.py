"""Which CPUs a container sees: the one rule shared by the cpuinfo, stat and online views.

Role: turn (cpuset cgroup, cpu cgroup, daemon options, the host's online CPUs) into the ordered list of
physical CPUs to show and how many of them. Not a virtual file itself (it has no `produce`).

Rule (virtual-files.md §6.3-6.5, lxcfs 7.0 max_cpu_count):
- visible = cpuset ∩ host online CPUs, ascending (a cpuset may name CPUs that are offline now);
- with --enable-cfs, only the first ceil(min quota/period over the cpu cgroup and its ancestors) of them
  are shown ("view mode"); without a quota anywhere all visible CPUs are shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pylxcfs.cgroups.cpu import Reader, cfs_cpu_count, visible_cpus
from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.hostfs import read_bytes

__all__ = ["CpuSelection", "select_cpus"]


@dataclass(frozen=True, slots=True)
class CpuSelection:
    """`visible`: physical CPUs the container may use (ascending); `shown`: how many rows/blocks to show."""

    visible: tuple[int, ...]
    shown: int
    view_mode: bool  # --enable-cfs: `shown` may be capped by the CFS quota

    @property
    def shown_cpus(self) -> tuple[int, ...]:
        """The physical CPUs whose rows/blocks are shown, renumbered 0.. in this order."""
        return self.visible[: self.shown]


def select_cpus(env: ViewEnv, ctx: ContainerContext, host_cpus: Iterable[int],
                read: Reader = read_bytes) -> CpuSelection:
    """The container's CPUs among `host_cpus`. Raises CgroupUnavailable if there is no cpuset cgroup or it
    leaves no online CPU (the renderer then serves the host file)."""
    if ctx.cpuset is None:
        raise CgroupUnavailable("cpuset", "no cpuset cgroup for this container")
    allowed = visible_cpus(ctx.cpuset, read)
    host = sorted(host_cpus)
    visible = tuple(host) if allowed is None else tuple(c for c in host if c in allowed)
    if not visible:
        raise CgroupUnavailable(ctx.cpuset.path, "cpuset contains no online CPU")
    shown = len(visible)
    view_mode = env.opts.enable_cfs
    if view_mode and ctx.cpu is not None:
        n = cfs_cpu_count(ctx.cpu, read)
        if n is not None:
            shown = min(shown, n)
    return CpuSelection(visible, shown, view_mode)
