"""A container's sysinfo(2) figures, from the same readers and views as its /proc files, so `busybox free` and
`cat /proc/meminfo` agree in the container:

- totalram/freeram/sharedram/bufferram: MemTotal/MemFree/Shmem/Buffers of its meminfo (views/meminfo.py);
- totalswap/freeswap: SwapTotal/SwapFree of the same meminfo (= its /proc/swaps; -u gives 0);
- uptime: its /proc/uptime age (host uptime - init start), rounded up to whole seconds as kernel/sys.c does;
- loads: with -l the loadavg sampler's averages for its cpu cgroup (views/loadavg.py, registered on first use
  like a first read of /proc/loadavg); without -l the host's, as its /proc/loadavg then shows;
- procs: threads in its memory cgroup and 3 levels of sub-cgroups (the sampler's count), as the kernel's procs
  counts every thread of the system.
Raises like a view does (NotInContainer, ProcessGone, CgroupUnavailable, OSError); the agent then lets the kernel
answer (CONTINUE).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.errors import CgroupUnavailable, ParseError
from pylxcfs.sampler import _tids
from pylxcfs.sysinfo.abi import SI_LOAD_SHIFT, SysinfoValues
from pylxcfs.views import loadavg, meminfo
from pylxcfs.views.readers import reader
from pylxcfs.views.uptime import CLK_TCK

KIB = 1024
_LOAD_SCALE = SI_LOAD_SHIFT - loadavg.FSHIFT  # avenrun (FSHIFT 11) -> sysinfo loads (SI_LOAD_SHIFT 16)


def host_loads(env: ViewEnv) -> tuple[int, int, int]:
    """The host's load averages in SI_LOAD_SHIFT fixed point, from the host root's /proc/loadavg: the figures the
    container's /proc/loadavg shows without -l, so `uptime` (procps reads the file) and busybox `uptime` (sysinfo)
    agree. The file's two decimals are the kernel's avenrun rounded to 1/100 (fs/proc/loadavg.c), within 0.005 of
    what the kernel's own sysinfo(2) would return."""
    text = reader(env)(env.root.proc_path("loadavg")).decode("ascii", "replace")
    try:
        a, b, c = (round(float(x) * (1 << SI_LOAD_SHIFT)) for x in text.split()[:3])
    except ValueError:
        raise ParseError("loadavg", "expected three load figures", line=text) from None
    return a, b, c


def container_loads(env: ViewEnv, ctx: ContainerContext) -> tuple[int, int, int]:
    """The -l averages of the container's cpu cgroup (0 until the sampler's first pass after registration)."""
    cg = ctx.cpu if ctx.cpu is not None else ctx.cpuacct
    if cg is None:
        raise CgroupUnavailable("cpu", "no cpu cgroup for the container")
    (a, b, c), _running, _total, _last = loadavg.figures(loadavg.state_of(env), cg, ctx.init_pid)
    return a << _LOAD_SCALE, b << _LOAD_SCALE, c << _LOAD_SCALE


def container_uptime_s(env: ViewEnv, ctx: ContainerContext, read: Callable[[str], bytes]) -> int:
    """Seconds since the container's init started, rounded up (do_sysinfo: tv_sec + (tv_nsec ? 1 : 0))."""
    text = read(env.root.proc_path("uptime")).decode()
    try:
        host_up = float(text.split()[0])
    except (IndexError, ValueError):
        raise ParseError("uptime", "expected '<seconds> <idle>'", line=text) from None
    return max(0, math.ceil(host_up - ctx.init_start_ticks / CLK_TCK))


def container_procs(ctx: ContainerContext) -> int:
    """Threads in the container's memory cgroup and its sub-cgroups (at least 1: the caller itself)."""
    cg = ctx.memory if ctx.memory is not None else ctx.cpu
    if cg is None:
        return 1
    tids = _tids(cg.path, cg.v2)
    return max(1, len(tids or ()))


def compute(env: ViewEnv, ctx: ContainerContext) -> SysinfoValues:
    """Every field for one intercepted call."""
    read = reader(env)
    host, mem = meminfo.gather(env, ctx)
    v = meminfo.meminfo_values(host, mem, env.opts)
    loads = container_loads(env, ctx) if env.opts.enable_loadavg else host_loads(env)
    return SysinfoValues(
        uptime_s=container_uptime_s(env, ctx, read),
        loads=loads,
        totalram=v["MemTotal"] * KIB,
        freeram=v["MemFree"] * KIB,
        sharedram=v["Shmem"] * KIB,
        bufferram=v["Buffers"] * KIB,
        totalswap=v["SwapTotal"] * KIB,
        freeswap=v["SwapFree"] * KIB,
        procs=container_procs(ctx),
    )
