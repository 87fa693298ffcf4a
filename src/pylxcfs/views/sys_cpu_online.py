"""/sys/devices/system/cpu/online for a container: the CPUs it sees.

Role: one virtual file (registry "sys/devices/system/cpu/online"). glibc's get_nprocs() (sysconf
_SC_NPROCESSORS_ONLN), hence nproc-less tools, JVMs and Go runtimes sizing thread pools, read this file.

Rules (virtual-files.md §6.5, lxcfs behaviour):
- default: the container's physical CPU list (cpuset ∩ host online), e.g. "1" for cpuset 1. Not renumbered,
  so it matches sched_getaffinity() and the (unfiltered) cpuN directories next to it;
- --enable-cfs ("view mode"): "0-<n-1>" (or "0") with n = the shown CPU count, matching the renumbered
  cpuinfo and stat views.
On any failure the renderer serves the host file.
"""

from __future__ import annotations

from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.parse.cpuset import format_cpuset, parse_cpuset
from pylxcfs.views.cpuview import CpuSelection, reader, select_cpus

__all__ = ["produce", "render_online"]

_ONLINE = "devices/system/cpu/online"


def render_online(sel: CpuSelection) -> str:
    """The file text for a selection. Pure."""
    if sel.view_mode:
        return format_cpuset(range(sel.shown)) + "\n"
    return format_cpuset(sel.visible) + "\n"


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """The caller's online CPU list (raises on failure; the renderer then serves the host file)."""
    read = reader(env)
    path = env.root.sys_path(_ONLINE)
    host = parse_cpuset(read(path).decode("ascii", "replace"), path)
    return render_online(select_cpus(env, ctx, host, read))
