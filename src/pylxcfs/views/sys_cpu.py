"""/sys/devices/system/cpu for a container: its CPUs by host id, the rest of the host's directory as it is.

Role: the rules behind the registry's tree "sys/devices/system/cpu" (a per-container directory view) and its
four file rows online, possible, present and offline (`produce_list(env, ctx, which)`).

Rules:
- S = the CPUs the container is shown (views/cpuview.py: cpuset ∩ host online CPUs; with --enable-cfs the first
  ceil(quota/period) of them), numbered as on the host. Those are the numbers sched_setaffinity(2) accepts
  inside the container, so `taskset -c $(cut -d- -f1 /sys/devices/system/cpu/online)`, numactl and pinning
  runtimes that read sysfs work;
- online = possible = present = S; offline = the empty list (a CPU the host takes offline leaves S, as it
  leaves the cpuset's effective list). glibc's get_nprocs_conf (nproc --all, _SC_NPROCESSORS_CONF) reads
  `possible`, get_nprocs (_SC_NPROCESSORS_ONLN, Python's os.cpu_count) reads `online`, util-linux lscpu
  reads all four plus the cpuN directories;
- `hidden_entries`: the directory lists "cpu<N>" only for N in S; every other entry (cpufreq, cpuidle,
  vulnerabilities, kernel_max, isolated, smt, ...) and everything inside a listed cpuN is the host's.
The same S is behind the /proc/stat cpuN rows (host ids too) and the /proc/cpuinfo blocks (renumbered
0..n-1 there, per the product's cpuinfo rule). C lxcfs 5.0 prints the raw cpuset as `online` and filters the
cpuN directories the same way, but passes possible/present/offline through (host-sized nproc --all).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.parse.cpuset import format_cpuset, parse_cpuset
from pylxcfs.views.cpuview import select_cpus
from pylxcfs.views.readers import reader

__all__ = ["LISTS", "container_cpus", "hidden_entries", "produce_list", "render_list"]

LISTS = ("online", "possible", "present", "offline")
_ONLINE = "devices/system/cpu/online"
_CPU_DIR = re.compile(r"cpu(0|[1-9][0-9]*)")


def container_cpus(env: ViewEnv, ctx: ContainerContext) -> tuple[int, ...]:
    """S: the caller's CPUs by host id, ascending (raises like select_cpus when there is no usable cpuset)."""
    read = reader(env)
    path = env.root.sys_path(_ONLINE)
    host = parse_cpuset(read(path).decode("ascii", "replace"), path)
    return tuple(sorted(select_cpus(env, ctx, host, read).shown_cpus))


def render_list(which: str, cpus: Iterable[int]) -> str:
    """The text of one list file for S = cpus. Pure."""
    if which not in LISTS:
        raise ValueError(f"unknown cpu list {which!r} (one of {', '.join(LISTS)})")
    return ("" if which == "offline" else format_cpuset(cpus)) + "\n"


def produce_list(env: ViewEnv, ctx: ContainerContext, which: str) -> str:
    """/sys/devices/system/cpu/<which> for the caller."""
    return render_list(which, container_cpus(env, ctx))


def hidden_entries(env: ViewEnv, ctx: ContainerContext, names: Iterable[str]) -> frozenset[str]:
    """The cpuN entries among `names` (the host directory's) that are not the caller's CPUs."""
    shown = frozenset(container_cpus(env, ctx))
    return frozenset(n for n in names if (m := _CPU_DIR.fullmatch(n)) is not None and int(m.group(1)) not in shown)
