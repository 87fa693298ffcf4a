"""/proc/stat text -> ProcStat (pure; no I/O).

Role: split the host's /proc/stat into what the stat view rewrites (the aggregate "cpu" line, the per-CPU
"cpuN" lines, "btime") and what it copies: every other line (intr, ctxt, processes, procs_running,
procs_blocked, softirq, and whatever a future kernel adds) is kept verbatim and in order, because the
kernel's own spacing must survive (design.md §3.3).

Columns of a cpu line (Documentation/filesystems/proc.rst, "1.7 Miscellaneous kernel statistics"): user nice
system idle iowait irq softirq steal guest guest_nice, in USER_HZ ticks. Kernels before 2.6.33 print fewer
columns; missing ones are read as 0 so every CpuTimes has exactly 10 values. Strict where it matters: a cpu
line with a non-number or fewer than 4 columns, a duplicate cpuN, or a malformed btime raises ParseError.
"""

from __future__ import annotations

from dataclasses import dataclass

from pylxcfs.errors import ParseError

__all__ = ["IDLE", "NCOLS", "CpuTimes", "ProcStat", "parse_stat"]

NCOLS = 10
IDLE = 3  # index of the idle column
_PAD = (0,) * NCOLS

CpuTimes = tuple[int, ...]  # exactly NCOLS ticks: user nice system idle iowait irq softirq steal guest guest_nice


@dataclass(frozen=True, slots=True)
class ProcStat:
    """A parsed /proc/stat. `other` holds the non-cpu lines verbatim (no newline), in file order."""

    total: CpuTimes | None  # the "cpu " line; None if absent
    per_cpu: dict[int, CpuTimes]  # cpuN -> times, only for CPUs the kernel listed (online CPUs)
    other: tuple[str, ...]
    btime: int | None  # seconds since the epoch at boot, None if the line is absent
    btime_index: int | None  # position of the btime line inside `other`


def _times(fields: list[str], source: str, lineno: int, line: str) -> CpuTimes:
    if len(fields) < 4:
        raise ParseError(source, "cpu line with fewer than 4 columns", lineno, line)
    try:
        vals = tuple(map(int, fields[:NCOLS]))
    except ValueError:
        raise ParseError(source, "non-numeric cpu column", lineno, line) from None
    if min(vals) < 0:
        raise ParseError(source, "negative cpu column", lineno, line)
    return vals + _PAD[len(vals):]


def parse_stat(text: str, source: str = "/proc/stat") -> ProcStat:
    """Parse /proc/stat; unknown lines are kept, malformed cpu/btime lines raise ParseError."""
    total: CpuTimes | None = None
    per_cpu: dict[int, CpuTimes] = {}
    other: list[str] = []
    btime: int | None = None
    btime_index: int | None = None
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("cpu"):
            fields = line.split()
            label = fields[0]
            if label == "cpu":
                if total is not None:
                    raise ParseError(source, "duplicate aggregate cpu line", lineno, line)
                total = _times(fields[1:], source, lineno, line)
                continue
            num = label[3:]
            if num.isascii() and num.isdigit():
                n = int(num)
                if n in per_cpu:
                    raise ParseError(source, f"duplicate line for cpu{n}", lineno, line)
                per_cpu[n] = _times(fields[1:], source, lineno, line)
                continue
        elif line.startswith("btime"):
            fields = line.split()
            if len(fields) != 2 or not fields[1].isascii() or not fields[1].isdigit():
                raise ParseError(source, "malformed btime", lineno, line)
            btime = int(fields[1])
            btime_index = len(other)
        other.append(line)
    return ProcStat(total, per_cpu, tuple(other), btime, btime_index)
