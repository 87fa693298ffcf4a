"""/proc/loadavg per container (spec §6.8; LXCFS `-l` load daemon).

Without `-l` (enable_loadavg off) the host file is served unchanged. With it, the first read of a
container registers its cpu cgroup; the background sampler (sampler.py) updates the kernel-style
fixed-point averages every 5 s; this view only formats what the sampler produced, so the request path
does no task scanning. The first read of a new container shows `0.00 0.00 0.00 0/1 <init>` like LXCFS.

Where the figures live: in a table every process of the daemon maps (sharedtable.py; the supervisor creates
it and the workers inherit it, env.shared_fd), one slot per cgroup keyed by its directory, so whichever worker
the kernel hands a read to shows the same history, and a replaced worker loses none of it. One pass every 5 s
for the whole table, run by whichever process claims it first (the pass clock in the table's header). A cgroup
the table cannot hold (more than DEFAULT_SLOTS containers, a path longer than a slot's key) keeps its figures
in the process that read it (LoadavgState.nodes), sampled by that process.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from pylxcfs import sharedtable
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


# A table slot's value: avenrun (3 x fixed point), running, total, last_pid, whether the cgroup is v2.
VALUE = struct.Struct("=QQQIIII")
# The table header's user bytes: when the next pass is due (CLOCK_MONOTONIC ns, 0: at once), passes so far,
# and the pid of the process that ran the last one.
PASS = struct.Struct("=QQI")
_STATE_LOCK = threading.Lock()
log = logging.getLogger(__name__)


@dataclass(slots=True)
class LoadavgState:
    """The view's figures: the shared table, and the nodes of cgroups it cannot hold (keyed by cgroup directory).
    Shared by the view (registers) and the sampler (updates)."""

    nodes: dict[str, LoadNode] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    table: sharedtable.SharedTable | None = None


def open_table(fd: int = -1) -> sharedtable.SharedTable:
    """The loadavg table on `fd` (a memfd made by sharedtable.create), or a new private one if fd < 0 or `fd` is
    not a usable table (logged: this process's figures are then its own)."""
    if fd >= 0:
        try:
            return sharedtable.SharedTable(fd, VALUE.size)
        except (OSError, ValueError) as e:
            log.warning("loadavg: the shared table on fd %d is unusable (%s); keeping this process's own", fd, e)
    fd = sharedtable.create("pylxcfs-loadavg")
    try:
        return sharedtable.SharedTable(fd, VALUE.size, owns_fd=True)
    except BaseException:
        os.close(fd)
        raise


def state_of(env: ViewEnv) -> LoadavgState:
    """This view's state object in env.states (created on first use, on env.shared_fd's table or a private one)."""
    st = env.states.get(STATE_KEY)
    if st is None:
        with _STATE_LOCK:
            st = env.states.get(STATE_KEY)
            if st is None:
                st = env.states[STATE_KEY] = LoadavgState(table=open_table(env.shared_fd))
    assert isinstance(st, LoadavgState)
    return st


def figures(st: LoadavgState, cg: CgroupDir, init_pid: int) -> tuple[tuple[int, int, int], int, int, int]:
    """(avenrun, running, total, last_pid) of one cgroup; registers it (all zero, init as last pid) if new.
    Raises sharedtable.TableBusy if a peer holds the table's lock too long."""
    t = st.table
    if t is not None and cg.path not in st.nodes:  # once kept here, always here (a freed slot is no new history)
        key = os.fsencode(cg.path)
        t.lock()
        try:
            i = t.find(key)
            if i >= 0:
                a, b, c, running, total, last_pid, _v2 = VALUE.unpack(t.value(i))
                return (a, b, c), running, total, last_pid
        finally:
            t.unlock()
        t.lock(exclusive=True)
        try:
            i = t.claim(key, VALUE.pack(0, 0, 0, 0, 1, init_pid, int(cg.v2)))
            if i >= 0:
                a, b, c, running, total, last_pid, _v2 = VALUE.unpack(t.value(i))
                return (a, b, c), running, total, last_pid
        finally:
            t.unlock()
    with st.lock:  # the table is full, or the path is longer than a slot's key
        node = st.nodes.get(cg.path)
        if node is None:
            node = st.nodes[cg.path] = LoadNode(cg, last_pid=init_pid)
        a, b, c = node.avenrun
        return (a, b, c), node.running, node.total, node.last_pid


def registered(st: LoadavgState) -> list[str]:
    """Every cgroup directory with figures (table and process-local), for tools and tests."""
    out: list[str] = []
    if st.table is not None:
        st.table.lock()
        try:
            out = [os.fsdecode(k) for _i, k in st.table.live()]
        finally:
            st.table.unlock()
    with st.lock:
        out.extend(st.nodes)
    return out


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


def render_loadavg(avenrun: Sequence[int], running: int, total: int, last_pid: int) -> str:
    """The /proc/loadavg line."""
    return f"{_fmt(avenrun[0])} {_fmt(avenrun[1])} {_fmt(avenrun[2])} {running}/{total} {last_pid}\n"


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """Host file without -l; else the sampler's figures for the container's cpu cgroup."""
    if not env.opts.enable_loadavg:
        return env.root.read_proc("loadavg").decode()
    cg = ctx.cpu if ctx.cpu is not None else ctx.cpuacct
    if cg is None:
        raise CgroupUnavailable("cpu", "no cpu cgroup for the container")
    avenrun, running, total, last_pid = figures(state_of(env), cg, ctx.init_pid)
    return render_loadavg(avenrun, running, total, last_pid)
