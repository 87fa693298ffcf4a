"""/proc/uptime for a container (spec §6.7; LXCFS proc_uptime_read).

uptime = host uptime - the container init's start time (field 22 of /proc/<init>/stat, in USER_HZ ticks);
idle = uptime - CPU time the container's cgroup used, or uptime when that exceeds it (a single-CPU figure, as
in LXCFS). CPU time: v1 cpuacct.usage (ns); v2 cpu.stat usage_usec (LXCFS 7.0 cannot read it on v2 and
reports idle = uptime; we can). Host uptime comes from the host's /proc/uptime (CLOCK_BOOTTIME, like LXCFS),
so fixture trees render deterministically.
"""

from __future__ import annotations

import os

from pylxcfs.context import CgroupDir, ContainerContext, ViewEnv
from pylxcfs.errors import ParseError
from pylxcfs.hostfs import read_bytes
from pylxcfs.parse.keyvalue import parse_flat_keyed, parse_int
from pylxcfs.views.readers import Reader, reader

# USER_HZ: the unit of /proc/<pid>/stat times; 100 on every Linux ABI (include/asm-generic/param.h).
CLK_TCK = os.sysconf("SC_CLK_TCK")


def render_uptime(host_uptime_s: float, init_start_ticks: int, busy_s: float, clk_tck: int = CLK_TCK) -> str:
    """The container's /proc/uptime line."""
    age = max(0.0, host_uptime_s - init_start_ticks / clk_tck)
    idle = age - busy_s if age >= busy_s else age
    return f"{age:.2f} {idle:.2f}\n"


def cpu_busy_s(cg: CgroupDir | None, read: Reader = read_bytes) -> float:
    """CPU time used by the cgroup, in seconds; 0.0 if it cannot be read (then idle = uptime)."""
    if cg is None:
        return 0.0
    try:
        if cg.v2:
            path = f"{cg.path}/cpu.stat"
            return parse_flat_keyed(read(path).decode(), path).get("usage_usec", 0) / 1e6
        path = f"{cg.path}/cpuacct.usage"
        return parse_int(read(path).decode(), path) / 1e9
    except (OSError, ParseError):
        return 0.0


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """View entry point (context.py contract)."""
    read = reader(env)  # cached descriptors on a live host (views/readers.py): always fresh content
    text = read(env.root.proc_path("uptime")).decode()
    try:
        host_up = float(text.split()[0])
    except (IndexError, ValueError):
        raise ParseError("uptime", "expected '<seconds> <idle>'", line=text) from None
    return render_uptime(host_up, ctx.init_start_ticks, cpu_busy_s(ctx.cpuacct, read))
