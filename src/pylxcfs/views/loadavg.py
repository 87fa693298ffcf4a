"""/proc/loadavg per container (spec §6.8; LXCFS `-l` load daemon).

Without `-l` (enable_loadavg off) the host file is served unchanged. With it, the first read of a
container registers its cpu cgroup in LoadavgState; the background sampler (sampler.py) updates the
kernel-style fixed-point averages every 5 s; this view only formats what the sampler produced, so the
request path does no task scanning. The first read of a new container shows `0.00 0.00 0.00 0/1 <init>`
like LXCFS.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from pylxcfs.context import CgroupDir, ContainerContext, ViewEnv
from pylxcfs.errors import CgroupUnavailable

STATE_KEY = "loadavg"

# Kernel fixed point (include/linux/sched/loadavg.h): FSHIFT 11, FIXED_1 = 1 << 11, and the per-5 s decay
# factors EXP_1/EXP_5/EXP_15 = 2048 / exp(5 s / {1, 5, 15} min).
FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP = (1884, 2014, 2037)


@dataclass(slots=True)
class LoadNode:
    """One container cgroup's load averages (fixed point, FSHIFT) and last sample."""

    cg: CgroupDir
    avenrun: list[int] = field(default_factory=lambda: [0, 0, 0])
    running: int = 0  # R + D tasks at the last sample
    total: int = 1  # threads at the last sample (LXCFS starts at 1)
    last_pid: int = 0  # highest tid seen (a host pid, as in LXCFS)


@dataclass(slots=True)
class LoadavgState:
    """Nodes keyed by cgroup directory; shared by the view (registers) and the sampler (updates)."""

    nodes: dict[str, LoadNode] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def state_of(env: ViewEnv) -> LoadavgState:
    """This view's state object in env.states (created on first use)."""
    st = env.states.get(STATE_KEY)
    if st is None:
        st = env.states.setdefault(STATE_KEY, LoadavgState())
    assert isinstance(st, LoadavgState)
    return st


def calc_load(old: int, running: int, exp: int) -> int:
    """One EWMA step in the kernel's fixed point (kernel/sched/loadavg.c calc_load, with its round-up)."""
    active = running * FIXED_1
    new = old * exp + active * (FIXED_1 - exp)
    if active >= old:
        new += FIXED_1 - 1
    return new >> FSHIFT


def _fmt(x: int) -> str:
    # LOAD_INT / LOAD_FRAC with the kernel's FIXED_1/200 rounding (fs/proc/loadavg.c).
    x += FIXED_1 // 200
    return f"{x >> FSHIFT}.{((x & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


def render_loadavg(avenrun: list[int], running: int, total: int, last_pid: int) -> str:
    """The /proc/loadavg line."""
    return f"{_fmt(avenrun[0])} {_fmt(avenrun[1])} {_fmt(avenrun[2])} {running}/{total} {last_pid}\n"


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """Host file without -l; else the sampler's figures for the container's cpu cgroup."""
    if not env.opts.enable_loadavg:
        return env.root.read_proc("loadavg").decode()
    cg = ctx.cpu if ctx.cpu is not None else ctx.cpuacct
    if cg is None:
        raise CgroupUnavailable("cpu", "no cpu cgroup for the container")
    st = state_of(env)
    with st.lock:
        node = st.nodes.get(cg.path)
        if node is None:
            node = st.nodes[cg.path] = LoadNode(cg, last_pid=ctx.init_pid)
        return render_loadavg(list(node.avenrun), node.running, node.total, node.last_pid)
