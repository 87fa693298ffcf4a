"""CPU getters by meaning over cgroup v1 and v2 files: visible CPUs, CFS bandwidth, CPU usage.

Role: the cpu part of lxcfs's cgroup_ops table, in Python. Every getter takes a `CgroupDir` from the
ContainerContext (absolute directory + v1/v2 flag + the hierarchy's mount root, which bounds ancestor walks)
and returns values in stated units; it never renders. Reads go to the paths the resolver built from the
HostRoot, so fixture trees work unchanged.

v1 vs v2 (Documentation/admin-guide/cgroup-v1/{cpusets,cpuacct}.rst, sched-bwc.rst; cgroup-v2.rst):

| meaning         | v1                                                    | v2                              |
|-----------------|-------------------------------------------------------|---------------------------------|
| visible CPUs    | cpuset.effective_cpus, else cpuset.cpus               | cpuset.cpus.effective           |
| CFS bandwidth   | cpu.cfs_quota_us (-1 = none) / cpu.cfs_period_us      | cpu.max ("max 100000" = none)   |
| per-CPU usage   | cpuacct.usage_all (ns user/system per CPU), else      | none: v2 has no per-CPU usage   |
|                 | cpuacct.usage_percpu split by cpuacct.stat's ratio    |                                 |
| total usage     | sum of the above                                      | cpu.stat usage/user/system_usec |

Errors: a malformed value raises ParseError; a missing optional file gives None; OSError other than
"missing" propagates (the renderer then serves the host file).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable, ParseError
from pylxcfs.hostfs import read_bytes
from pylxcfs.parse.cpuset import parse_cpuset

__all__ = [
    "CpuBandwidth",
    "CpuUsage",
    "Reader",
    "cfs_cpu_count",
    "cpu_bandwidth",
    "cpu_usage",
    "effective_cpu_limit",
    "visible_cpus",
]

_MISSING = (errno.ENOENT, errno.ENOTDIR)

# How files are read: hostfs.read_bytes, or a cached-descriptor reader (fdcache.FdCache.read) for live hosts.
Reader = Callable[[str], bytes]
_MAX_DEPTH = 1000  # lxcfs stops ancestor walks after 1000 levels too


def _read_opt(path: str, read: Reader) -> str | None:
    """The file's text, or None if it does not exist (an optional file or a vanished cgroup)."""
    try:
        return read(path).decode("ascii", "replace")
    except OSError as e:
        if e.errno in _MISSING:
            return None
        raise


_ANCESTORS: dict[tuple[str, str], tuple[str, ...]] = {}


def _ancestors(d: CgroupDir) -> tuple[str, ...]:
    """d.path, its parent, ... up to and including d.mount_root (never above it). Memoised: pure string work
    done on every open otherwise."""
    key = (d.path, d.mount_root)
    hit = _ANCESTORS.get(key)
    if hit is not None:
        return hit
    out = [d.path]
    root = d.mount_root.rstrip("/") or "/"
    p = d.path.rstrip("/")
    while p != root and len(p) > len(root) and len(out) < _MAX_DEPTH:
        p = os.path.dirname(p)
        out.append(p)
    if len(_ANCESTORS) >= 4096:
        _ANCESTORS.clear()
    res = _ANCESTORS[key] = tuple(out)
    return res


# ----------------------------------------------------------------------------------------------- cpuset

def visible_cpus(d: CgroupDir, read: Reader = read_bytes) -> frozenset[int] | None:
    """CPUs the cgroup may run on; walks up while the file is missing or empty; None = no cpuset anywhere.

    v1's cpuset.effective_cpus already is the intersection with every ancestor (cpusets.rst 1.3), so one read
    normally suffices; cpuset.cpus is the fallback for kernels without it. On v2, a cgroup where the cpuset
    controller is not enabled has no cpuset.cpus.effective, and its parent's value applies (cgroup-v2.rst
    "Cpuset Interface Files").
    """
    names = ("cpuset.cpus.effective",) if d.v2 else ("cpuset.effective_cpus", "cpuset.cpus")
    for directory in _ancestors(d):
        for name in names:
            text = _read_opt(f"{directory}/{name}", read)
            if text is None or not text.strip():
                continue
            return parse_cpuset(text, f"{directory}/{name}")
    return None


# ------------------------------------------------------------------------------------------ CFS bandwidth

@dataclass(frozen=True, slots=True)
class CpuBandwidth:
    """A CFS bandwidth limit: `quota_usec` of CPU time per `period_usec` of wall time (sched-bwc.rst)."""

    quota_usec: int
    period_usec: int

    @property
    def cpus(self) -> Fraction:
        """The limit in CPUs (quota / period), e.g. Fraction(1, 2) for 50000/100000."""
        return Fraction(self.quota_usec, self.period_usec)


def _parse_int(text: str, source: str) -> int:
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        raise ParseError(source, "expected an integer", line=s) from None


def cpu_bandwidth(directory: str, v2: bool, read: Reader = read_bytes) -> CpuBandwidth | None:
    """The CFS limit set at this one cgroup directory; None = unlimited or no such file here."""
    if v2:
        src = f"{directory}/cpu.max"
        text = _read_opt(src, read)
        if text is None:
            return None
        fields = text.split()
        if len(fields) != 2:
            raise ParseError(src, "expected '<quota|max> <period>'", line=text.strip())
        if fields[0] == "max":
            return None
        quota = _parse_int(fields[0], src)
        period = _parse_int(fields[1], src)
    else:
        qsrc = f"{directory}/cpu.cfs_quota_us"
        qtext = _read_opt(qsrc, read)
        if qtext is None:
            return None
        quota = _parse_int(qtext, qsrc)
        if quota < 0:  # -1 = no limit (sched-bwc.rst)
            return None
        psrc = f"{directory}/cpu.cfs_period_us"
        ptext = _read_opt(psrc, read)
        if ptext is None:
            return None
        period = _parse_int(ptext, psrc)
    if quota <= 0 or period <= 0:
        raise ParseError(src if v2 else qsrc, f"non-positive quota/period {quota}/{period}")
    return CpuBandwidth(quota, period)


def _tightest(d: CgroupDir, read: Reader) -> CpuBandwidth | None:
    best: CpuBandwidth | None = None
    for directory in _ancestors(d):
        bw = cpu_bandwidth(directory, d.v2, read)
        # q/p < bq/bp without Fractions (they cost microseconds on the per-open path)
        if bw is not None and (best is None or bw.quota_usec * best.period_usec < best.quota_usec * bw.period_usec):
            best = bw
    return best


def effective_cpu_limit(d: CgroupDir, read: Reader = read_bytes) -> Fraction | None:
    """min(quota/period) over the cgroup and its ancestors up to the mount root (lxcfs 7.0); None = no limit.

    A child cannot get more CPU time than any ancestor's quota allows (sched-bwc.rst "Hierarchical
    considerations"), so the tightest ratio along the path is what the container can use. The mount root is
    read too: the real root task group cannot be limited (tg_set_cfs_bandwidth() refuses it), but a hierarchy
    mounted inside a cgroup namespace shows a limited cgroup as its root.
    """
    best = _tightest(d, read)
    return None if best is None else best.cpus


def cfs_cpu_count(d: CgroupDir, read: Reader = read_bytes) -> int | None:
    """ceil(effective CFS limit) in whole CPUs (lxcfs --enable-cfs max_cpus); None = no quota anywhere."""
    best = _tightest(d, read)
    if best is None:
        return None
    return max(1, -(-best.quota_usec // best.period_usec))


# -------------------------------------------------------------------------------------------------- usage

@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU time the cgroup used since it was created, in nanoseconds.

    `per_cpu` maps a CPU number to (user_ns, system_ns); it is None on cgroup v2, whose cpu.stat has totals
    only. `user_ns`/`system_ns` are totals over all CPUs.
    """

    user_ns: int
    system_ns: int
    per_cpu: dict[int, tuple[int, int]] | None


def _usage_all(text: str, src: str) -> dict[int, tuple[int, int]]:
    # cpuacct.usage_all (kernel >= 4.7): "cpu user system" then "N <user_ns> <system_ns>" per possible CPU.
    # Its user column is CPUTIME_USER+NICE and system is SYSTEM+IRQ+SOFTIRQ (kernel/sched/cpuacct.c).
    lines = text.split("\n")
    if not lines or lines[0].split() != ["cpu", "user", "system"]:
        raise ParseError(src, "expected header 'cpu user system'", 1, lines[0] if lines else "")
    out: dict[int, tuple[int, int]] = {}
    for lineno, line in enumerate(lines[1:], 2):
        if not line:
            continue
        f = line.split()
        if len(f) != 3:
            raise ParseError(src, "expected 'cpu user system'", lineno, line)
        try:
            out[int(f[0])] = (int(f[1]), int(f[2]))
        except ValueError:
            raise ParseError(src, "non-numeric field", lineno, line) from None
    return out


def _keyed(text: str, src: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        key, _, val = line.partition(" ")
        try:
            out[key] = int(val)
        except ValueError:
            raise ParseError(src, "expected 'key integer'", lineno, line) from None
    return out


def _split_by_stat(percpu_text: str, stat_text: str, psrc: str, ssrc: str) -> dict[int, tuple[int, int]]:
    # Old kernels (< 4.7) lack usage_all: cpuacct.usage_percpu is precise ns per CPU, cpuacct.stat the
    # cgroup-wide user/system split in USER_HZ ticks. Split each CPU's ns in the cgroup-wide ratio; all of it
    # is user time when both counters are still 0. user = floor(ns*U/(U+S)), system = ns - user: exact sum.
    try:
        per = [int(x) for x in percpu_text.split()]
    except ValueError:
        raise ParseError(psrc, "non-numeric per-CPU usage", line=percpu_text.strip()) from None
    st = _keyed(stat_text, ssrc)
    if "user" not in st or "system" not in st:
        raise ParseError(ssrc, "missing 'user' or 'system'")
    u, s = st["user"], st["system"]
    out: dict[int, tuple[int, int]] = {}
    for cpu, ns in enumerate(per):
        user = ns if u + s == 0 else ns * u // (u + s)
        out[cpu] = (user, ns - user)
    return out


def cpu_usage(d: CgroupDir, read: Reader = read_bytes) -> CpuUsage:
    """CPU time used by the cgroup (ns); raises CgroupUnavailable if no usage file exists there."""
    if d.v2:
        src = f"{d.path}/cpu.stat"
        text = _read_opt(src, read)
        if text is None:
            raise CgroupUnavailable(src)
        st = _keyed(text, src)
        if "user_usec" not in st or "system_usec" not in st:
            raise ParseError(src, "missing user_usec/system_usec")
        return CpuUsage(st["user_usec"] * 1000, st["system_usec"] * 1000, None)
    src = f"{d.path}/cpuacct.usage_all"
    text = _read_opt(src, read)
    if text is not None:
        per = _usage_all(text, src)
    else:
        psrc, ssrc = f"{d.path}/cpuacct.usage_percpu", f"{d.path}/cpuacct.stat"
        ptext, stext = _read_opt(psrc, read), _read_opt(ssrc, read)
        if ptext is None or stext is None:
            raise CgroupUnavailable(psrc if ptext is None else ssrc)
        per = _split_by_stat(ptext, stext, psrc, ssrc)
    return CpuUsage(sum(v[0] for v in per.values()), sum(v[1] for v in per.values()), per)
