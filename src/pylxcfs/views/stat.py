"""/proc/stat for a container: one row per CPU it sees, CPU times from its cgroup, monotone counters.

Role: one virtual file (registry "proc/stat"). `produce` gathers (host /proc/stat, cpuset, CFS quota with
--enable-cfs, cgroup CPU usage, a monotonic clock reading), then calls pure functions: `raw_rows` (the
formula below), `advance` (the explicit counter state) and `render_stat`.

Formula (all values in USER_HZ ticks, columns user nice system idle iowait irq softirq steal guest guest_nice):
  V = the container's CPUs, ascending (cpuset ∩ host online); m = len(V), or with --enable-cfs
      min(len(V), ceil(min quota/period over the cpu cgroup and its ancestors)). Row k describes physical CPU
      V[k] and is named after it, "cpu<V[k]>": the ids of /sys/devices/system/cpu/online and of
      sched_setaffinity, so mpstat/top's per-CPU lines name the CPUs taskset accepts (C lxcfs keeps the
      physical number too; /proc/cpuinfo alone is renumbered 0..m-1).
  user_k, system_k:
      v1 and m == len(V): cpuacct.usage_all of CPU V[k] (ns -> ticks: floor(ns * USER_HZ / 1e9)); on kernels
          without usage_all, cpuacct.usage_percpu of V[k] split in the ratio of cpuacct.stat user:system
      otherwise (v2 has totals only; with a CFS cap the usage of all V must fit into m rows):
          U = ticks(sum of the cgroup's user time over V, or cpu.stat user_usec on v2); S likewise;
          user_k = U // m + (1 if k < U % m else 0)   (an even split: exact sum and monotone in U)
  idle_k  = h.idle + (used_h - (user_k + system_k)) if used_h >= user_k + system_k else h.idle,
      where h is the host row of V[k] and used_h the sum of its non-idle columns (lxcfs proc_stat, §6.6):
      time this CPU spent on anything other than the container counts as idle from inside.
  nice, iowait, irq, softirq, steal, guest, guest_nice = 0 (cgroups do not account them per cgroup).
  No cpuacct cgroup at all: the host rows of V[:m].
  cpu (aggregate) = the column-wise sum of the shown rows, so sum(rows) == total always.

Monotone counters (the state in env.states["stat"], one node per (cpuacct, cpuset) cgroup pair): each shown
value is shown = max(previous shown, raw + offset), so it never goes down and top never computes a negative
delta. A small dip of a raw value (up to RESET_TICKS: the idle formula mixes the host's tick-sampled times with
the cgroup's exact ones, and a v1 fallback ratio shifts user against system) is held, not lost: once the raw
value is back above it, shown == raw + offset again, so the idle time of a container does not drift away from
the formula read after read, and two pool workers that keep a node each for one container show the same
numbers (they differ at most by a dip one of them saw). A larger drop is a reset (the cgroup recreated under
the same path): the offset takes it up, and the counter goes on growing from what was shown. When the set of
CPUs changes, the node is rebased (no jump); rows that disappear are folded into the last remaining row
(lxcfs's "the last row absorbs the remaining CPUs"), so neither a row nor the aggregate ever goes down.
Nodes unused for 10 minutes are pruned (checked at most once a minute).

Differences from lxcfs --enable-cfs (virtual-files.md §6.6 view mode): counters start at the formula's
values, not at zero on the first read, and idle is not reduced to make a fractional quota look like a full
CPU (a container capped at 0.5 CPU shows 50% busy at most, which is what it gets).

Other lines: intr, ctxt, processes, procs_running, procs_blocked, softirq and unknown lines are the host's,
verbatim (cgroups do not count interrupts, context switches or forks). btime too stays the host's, as in the
C lxcfs: the start times in /proc/<pid>/stat count from the HOST's boot (a pid namespace does not rebase
them), and ps, top and every tool compute a process's start as btime + starttime / USER_HZ; a container's
btime would put its processes in the future by the host's uptime at container start. The container's age is
/proc/uptime's business (`uptime`, `uptime -s`, top's "up").
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pylxcfs.cgroups.cpu import CpuUsage, cpu_usage
from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.parse.stat import IDLE, NCOLS, CpuTimes, ProcStat, parse_stat
from pylxcfs.views.cpuview import select_cpus
from pylxcfs.views.readers import reader

__all__ = ["StatNode", "StatState", "advance", "produce", "raw_rows", "render_stat"]

# /proc/stat counts in USER_HZ, which is what sysconf(_SC_CLK_TCK) reports (times(2)); 100 on Linux.
USER_HZ = os.sysconf("SC_CLK_TCK")
_NS_PER_S = 1_000_000_000
PRUNE_AFTER_S = 600.0
PRUNE_EVERY_S = 60.0
RESET_TICKS = 2 * USER_HZ  # a raw value that drops by more than this (2 s) was reset; smaller dips are held
_ZERO_TAIL = (0,) * (NCOLS - 4)


def ns_to_ticks(ns: int, hz: int = USER_HZ) -> int:
    """Nanoseconds -> USER_HZ ticks, truncating (as lxcfs does)."""
    return ns * hz // _NS_PER_S


def _even(total: int, m: int, k: int) -> int:
    return total // m + (1 if k < total % m else 0)


def raw_rows(host: ProcStat, shown: Sequence[int], visible: Sequence[int], usage: CpuUsage | None,
             hz: int = USER_HZ) -> list[CpuTimes]:
    """The formula in the module docstring, before the monotone state: one 10-tuple per shown CPU. Pure."""
    hrows = [host.per_cpu[c] for c in shown]
    if usage is None:
        return hrows
    m = len(shown)
    if usage.per_cpu is not None and m == len(visible):
        pairs = [usage.per_cpu.get(c, (0, 0)) for c in shown]
        users = [ns_to_ticks(u, hz) for u, _ in pairs]
        systems = [ns_to_ticks(s, hz) for _, s in pairs]
    else:
        if usage.per_cpu is not None:
            u_ns = sum(usage.per_cpu.get(c, (0, 0))[0] for c in visible)
            s_ns = sum(usage.per_cpu.get(c, (0, 0))[1] for c in visible)
        else:
            u_ns, s_ns = usage.user_ns, usage.system_ns
        ut, st = ns_to_ticks(u_ns, hz), ns_to_ticks(s_ns, hz)
        users = [_even(ut, m, k) for k in range(m)]
        systems = [_even(st, m, k) for k in range(m)]
    rows: list[CpuTimes] = []
    for h, u, s in zip(hrows, users, systems, strict=True):
        idle = h[IDLE]
        used_h = sum(h) - idle
        cg = u + s
        if used_h >= cg:
            idle += used_h - cg
        rows.append((u, 0, s, idle, *_ZERO_TAIL))
    return rows


@dataclass(slots=True)
class StatNode:
    """Counter state of one container cgroup: what was last computed (`base`), what was shown (`out`) and what is
    added to the raw values (`off`: the resets and rebases taken up so far)."""

    config: tuple[int, ...]  # the physical CPUs behind the rows; a change rebases
    base: list[CpuTimes]
    out: list[list[int]]
    seen: float  # monotonic seconds of the last read
    off: list[list[int]] = field(default_factory=list)


@dataclass(slots=True)
class StatState:
    """env.states["stat"]: nodes by cgroup key (cpuacct path, cpuset path)."""

    nodes: dict[str, StatNode] = field(default_factory=dict)
    last_prune: float = 0.0

    def prune(self, now: float) -> None:
        """Forget cgroups not read for PRUNE_AFTER_S (at most once per PRUNE_EVERY_S)."""
        if now - self.last_prune < PRUNE_EVERY_S:
            return
        self.last_prune = now
        stale = [k for k, n in self.nodes.items() if now - n.seen > PRUNE_AFTER_S]
        for k in stale:
            del self.nodes[k]


def advance(node: StatNode | None, config: tuple[int, ...], raw: Sequence[CpuTimes], now: float) -> StatNode:
    """Fold one read into the node (or start one): shown = max(shown, raw + offset), a reset moves the offset.
    Pure except `node`."""
    if node is None:
        return StatNode(config, list(raw), [list(r) for r in raw], now, [[0] * NCOLS for _ in raw])
    out, off = node.out, node.off
    if node.config == config and len(node.base) == len(raw) == len(off):
        for o, f, b, r in zip(out, off, node.base, raw, strict=True):
            for c in range(NCOLS):
                v = r[c]
                if b[c] - v > RESET_TICKS:  # reset: go on from what was shown
                    f[c] = o[c] - v
                v += f[c]
                if v > o[c]:
                    o[c] = v
    else:
        # Rebase: keep what was shown. Rows that vanish fold into the last remaining row; new rows start
        # from their raw values (the aggregate can only grow). Every row then grows with its new raw values.
        n = len(raw)
        if n < len(out):
            last = out[n - 1]
            for gone in out[n:]:
                for c in range(NCOLS):
                    last[c] += gone[c]
            del out[n:]
        for r in raw[len(out):]:
            out.append(list(r))
        node.off = [[o[c] - r[c] for c in range(NCOLS)] for o, r in zip(out, raw, strict=True)]
        node.config = config
    node.base = list(raw)
    node.seen = now
    return node


def render_stat(rows: Sequence[Sequence[int]], host: ProcStat, btime: int | None,
                ids: Sequence[int] | None = None) -> str:
    """The file text: "cpu " aggregate, one "cpu<id>" row per entry of `ids` (default 0..), then the host's other
    lines (btime replaced if given). Pure."""
    total = [sum(col) for col in zip(*rows, strict=True)] if rows else [0] * NCOLS
    names = range(len(rows)) if ids is None else ids
    head = "cpu  " + " ".join(map(str, total)) + "\n" + "".join(
        f"cpu{k} " + " ".join(map(str, r)) + "\n" for k, r in zip(names, rows, strict=True))
    rest = host.rest
    if rest and not rest.endswith("\n"):
        rest += "\n"
    if btime is not None and host.btime_span is not None:
        a, b = host.btime_span
        rest = rest[:a] + str(btime) + rest[b:]
    return head + rest


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """The caller's /proc/stat (raises on failure; the renderer then serves the host file)."""
    read = reader(env)
    path = env.root.proc_path("stat")
    host = parse_stat(read(path).decode("ascii", "replace"), path)
    sel = select_cpus(env, ctx, host.per_cpu, read)
    shown = sel.shown_cpus
    usage = cpu_usage(ctx.cpuacct, read) if ctx.cpuacct is not None else None
    raw = raw_rows(host, shown, sel.visible, usage)
    state = env.states.get("stat")
    if not isinstance(state, StatState):
        state = StatState()
        env.states["stat"] = state
    now = time.monotonic()
    # One node per (usage cgroup, cpuset cgroup): on v1 two containers may share a cpuacct cgroup (say the
    # hierarchy root, when the runtime made none) while their cpusets differ; one shared node would then be
    # rebased on every alternate read.
    key = f"{ctx.cpuacct.path if ctx.cpuacct else ''}\0{ctx.cpuset.path if ctx.cpuset else ''}"
    node = advance(state.nodes.get(key), shown, raw, now)
    state.nodes[key] = node
    state.prune(now)
    return render_stat(node.out, host, None, shown)  # the host's btime (module doc)
