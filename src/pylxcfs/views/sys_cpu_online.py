"""/sys/devices/system/cpu/online for a container: the CPUs it sees.

Role: one virtual file (registry "sys/devices/system/cpu/online"). glibc's get_nprocs() (sysconf
_SC_NPROCESSORS_ONLN), hence nproc-less tools, JVMs and Go runtimes sizing thread pools, read this file.

Rule: "0-<n-1>" (or "0") where n is the number of CPUs the container is shown (cpuset ∩ host online; with
--enable-cfs capped at ceil(quota/period)). Renumbered like the cpuinfo "processor" lines and the /proc/stat
cpuN rows, so top/mpstat (which name CPUs after the stat rows) and lscpu (which names them after this file)
agree on one numbering. This differs from lxcfs outside --enable-cfs, which prints the raw cpuset string
("1" for cpuset 1, virtual-files.md §6.5) while renumbering cpuinfo: its three views disagree. The physical
numbers stay visible through sched_getaffinity (taskset, nproc) and the unfiltered cpuN directories.
On any failure the renderer serves the host file.
"""

from __future__ import annotations

from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.parse.cpuset import format_cpuset, parse_cpuset
from pylxcfs.views.cpuview import CpuSelection, select_cpus
from pylxcfs.views.readers import reader

__all__ = ["produce", "render_online"]

_ONLINE = "devices/system/cpu/online"


def render_online(sel: CpuSelection) -> str:
    """The file text for a selection. Pure."""
    return format_cpuset(range(sel.shown)) + "\n"


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """The caller's online CPU list (raises on failure; the renderer then serves the host file)."""
    read = reader(env)
    path = env.root.sys_path(_ONLINE)
    host = parse_cpuset(read(path).decode("ascii", "replace"), path)
    return render_online(select_cpus(env, ctx, host, read))
