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
    """A parsed /proc/stat.

    `rest` is the text of every non-cpu line, verbatim and in file order (newline-terminated), so the view
    copies it with one concatenation; `btime_span` locates the btime number inside it for rewriting.
    """

    total: CpuTimes | None  # the "cpu " line; None if absent
    per_cpu: dict[int, CpuTimes]  # cpuN -> times, only for CPUs the kernel listed (online CPUs)
    rest: str
    btime: int | None  # seconds since the epoch at boot, None if the line is absent
    btime_span: tuple[int, int] | None  # rest[start:end] is the btime number

    @property
    def other(self) -> tuple[str, ...]:
        """The non-cpu lines (no newline)."""
        return tuple(line for line in self.rest.split("\n") if line)

    @property
    def btime_index(self) -> int | None:
        """Position of the btime line in `other`."""
        if self.btime_span is None:
            return None
        return sum(1 for line in self.rest[: self.btime_span[0]].split("\n") if line) - 1


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


def _cpu_line(line: str, total: CpuTimes | None, per_cpu: dict[int, CpuTimes], source: str,
              lineno: int) -> tuple[bool, CpuTimes | None]:
    """Record a cpu/cpuN line; returns (was a cpu row, new total). Other "cpu..." labels are not rows."""
    fields = line.split()
    label = fields[0]
    if label == "cpu":
        if total is not None:
            raise ParseError(source, "duplicate aggregate cpu line", lineno, line)
        return True, _times(fields[1:], source, lineno, line)
    num = label[3:]
    if num.isascii() and num.isdigit():
        n = int(num)
        if n in per_cpu:
            raise ParseError(source, f"duplicate line for cpu{n}", lineno, line)
        per_cpu[n] = _times(fields[1:], source, lineno, line)
        return True, total
    return False, total


def _btime(rest: str, source: str) -> tuple[int | None, tuple[int, int] | None]:
    i = 0 if rest.startswith("btime") else rest.find("\nbtime") + 1
    if i <= 0 and not rest.startswith("btime"):
        return None, None
    end = rest.find("\n", i)
    line = rest[i:] if end < 0 else rest[i:end]
    fields = line.split()
    if len(fields) != 2 or fields[0] != "btime" or not fields[1].isascii() or not fields[1].isdigit():
        raise ParseError(source, "malformed btime", line=line)
    start = i + line.index(fields[1], 5)
    return int(fields[1]), (start, start + len(fields[1]))


def parse_stat(text: str, source: str = "/proc/stat") -> ProcStat:
    """Parse /proc/stat; unknown lines are kept, malformed cpu/btime lines raise ParseError.

    Fast path: the kernel prints every cpu line first (fs/proc/stat.c show_stat), so only those are split and
    the rest (the long intr line included) is kept as one string. Text with a cpu line after other lines
    takes the general line-by-line path, which gives the same result.
    """
    total: CpuTimes | None = None
    per_cpu: dict[int, CpuTimes] = {}
    pos = 0
    lineno = 0
    n = len(text)
    while text.startswith("cpu", pos):
        end = text.find("\n", pos)
        if end < 0:
            end = n
        lineno += 1
        is_row, total = _cpu_line(text[pos:end], total, per_cpu, source, lineno)
        if not is_row:
            break
        pos = end + 1
    rest = text[pos:]
    if "\ncpu" in rest or rest.startswith("cpu"):
        return _parse_general(text, source)
    btime, span = _btime(rest, source)
    return ProcStat(total, per_cpu, rest, btime, span)


def _parse_general(text: str, source: str) -> ProcStat:
    total: CpuTimes | None = None
    per_cpu: dict[int, CpuTimes] = {}
    other: list[str] = []
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("cpu"):
            is_row, total = _cpu_line(line, total, per_cpu, source, lineno)
            if is_row:
                continue
        other.append(line)
    rest = "".join(line + "\n" for line in other)
    btime, span = _btime(rest, source)
    return ProcStat(total, per_cpu, rest, btime, span)
