"""/proc/cpuinfo text -> CpuInfo: per-processor blocks plus the text around them (pure; no I/O).

Role: cut the host's cpuinfo into the pieces the cpuinfo view filters and renumbers, keeping every byte of
every piece so that a render of all CPUs reproduces the host file exactly. The architecture is detected from
the content (never from uname: a fixture tree may come from another machine).

Layouts handled (kernel sources named; samples in tests/fixtures/hosts/<arch host>/proc/cpuinfo):
- x86_64 (arch/x86/kernel/cpu/proc.c show_cpuinfo): one block per CPU, starting "processor\\t: N", ending
  with a blank line; topology lines "physical id", "siblings", "core id", "cpu cores".
- arm64 (arch/arm64/kernel/cpuinfo.c c_show): blocks "processor\\t: N" / BogoMIPS / Features / CPU implementer /
  CPU architecture / CPU variant / CPU part / CPU revision, no "model name" (except under a 32-bit
  personality). Old 32-bit ARM kernels print a "Processor : ..." line before the blocks and a "Hardware /
  Revision / Serial" paragraph after them: both are kept as text outside the blocks.
- ppc64le (arch/powerpc/kernel/setup-common.c show_cpuinfo): blocks "processor\\t: N" / cpu / clock /
  revision, then a summary paragraph (timebase, platform, model, machine, MMU) after the last block.
- s390x (arch/s390/kernel/processor.c): a header paragraph (vendor_id IBM/S390, "# processors", bogomips per
  cpu, max thread id, features, facilities, cacheN, and one "processor N: version = ..." line per CPU), then
  per-CPU blocks that START with a blank line and "cpu number      : N" (kernel >= 4.7).

A block owns its separating blank line (the following one; on s390x the preceding one), so dropping blocks
never leaves doubled blank lines. Text that belongs to no block (preamble, trailers, odd paragraphs between
blocks) is kept verbatim in file order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pylxcfs.errors import ParseError

__all__ = ["CpuBlock", "CpuInfo", "S390Header", "detect_arch", "parse_cpuinfo"]

# "processor\t: 3" (x86, arm64, ppc64le, riscv, mips "processor               : 3"). Case-sensitive: the
# 32-bit ARM "Processor\t: ARMv7 Processor rev 5 (v7l)" line is NOT a block start (lxcfs is_processor_line()
# agrees: it needs a number).
# The block-start patterns are matched only at positions str.find() located (a line start): a "^...$" scan
# with re.M tries every character of the file and costs ~15 us on a 2-CPU x86 cpuinfo; this costs ~2 us.
_PROC_RE = re.compile(r"processor[ \t]*:[ \t]*(\d+)[ \t]*(?=\n|\Z)")
_S390_BLOCK_RE = re.compile(r"cpu number[ \t]*:[ \t]*(\d+)[ \t]*(?=\n|\Z)")
_S390_PROC_LINE_RE = re.compile(r"^processor (\d+):(.*)$")
_S390_COUNT_RE = re.compile(r"^(# processors[ \t]*:[ \t]*)(\d+)[ \t]*$")


@dataclass(frozen=True, slots=True)
class CpuBlock:
    """One CPU's block, verbatim (with its separator blank line). text[num_start:num_end] is the CPU number."""

    cpu: int
    text: str
    num_start: int
    num_end: int


@dataclass(frozen=True, slots=True)
class S390Header:
    """The s390x summary paragraph: `lines` verbatim except the CPU count and the per-CPU "processor N:" lines.

    `count_index` is the position in `lines` of "# processors : N" (None if absent) and `count_prefix` its
    text up to the number; `ids_index` is where the "processor N:" lines stood (they are contiguous in
    show_cpu_summary), and `ids` maps N to the text after "processor N:" (e.g. " version = FF, ...").
    """

    lines: tuple[str, ...]
    count_index: int | None
    count_prefix: str
    ids_index: int | None
    ids: dict[int, str]


@dataclass(frozen=True, slots=True)
class CpuInfo:
    """A parsed /proc/cpuinfo: `pieces` in file order (str = text outside any block)."""

    arch: str  # "x86_64" | "arm64" | "ppc64le" | "s390x" | "unknown"
    pieces: tuple[str | CpuBlock | S390Header, ...]
    ends_with_newline: bool

    @property
    def blocks(self) -> tuple[CpuBlock, ...]:
        """The CPU blocks in file order."""
        return tuple(p for p in self.pieces if isinstance(p, CpuBlock))

    @property
    def cpus(self) -> tuple[int, ...]:
        """The CPU numbers that have a block (the host's online CPUs), in file order."""
        return tuple(p.cpu for p in self.pieces if isinstance(p, CpuBlock))


def detect_arch(text: str) -> str:
    """Guess the architecture from cpuinfo content (the first line decides s390x, as in lxcfs)."""
    first = text.split("\n", 1)[0]
    if "IBM/S390" in first:
        return "s390x"
    if "CPU implementer" in text:
        return "arm64"
    if "\ntimebase" in text or "(pvr " in text:
        return "ppc64le"
    if "vendor_id" in text and "\nflags" in text:
        return "x86_64"
    return "unknown"


def _parse_s390_header(text: str, source: str) -> S390Header:
    lines = text.split("\n")
    count_index: int | None = None
    count_prefix = ""
    ids_index: int | None = None
    ids: dict[int, str] = {}
    kept: list[str] = []
    prev_was_id = False
    for lineno, line in enumerate(lines, 1):
        m = _S390_PROC_LINE_RE.match(line)
        if m:
            n = int(m.group(1))
            if n in ids:
                raise ParseError(source, f"duplicate 'processor {n}:' line", lineno, line)
            if ids_index is None:
                ids_index = len(kept)
                kept.append("")  # placeholder: the selected, renumbered lines go here
            elif not prev_was_id:
                raise ParseError(source, "'processor N:' lines are not contiguous", lineno, line)
            ids[n] = m.group(2)
            prev_was_id = True
            continue
        prev_was_id = False
        c = _S390_COUNT_RE.match(line)
        if c:
            count_index = len(kept)
            count_prefix = c.group(1)
        kept.append(line)
    return S390Header(tuple(kept), count_index, count_prefix, ids_index, ids)


def _block_starts(text: str, s390: bool) -> list[tuple[int, int, int, int]]:
    """(line start, number start, number end, number) of every block-start line, in file order."""
    word, rx = ("cpu number", _S390_BLOCK_RE) if s390 else ("processor", _PROC_RE)
    out: list[tuple[int, int, int, int]] = []
    pos = 0
    while (i := text.find(word, pos)) >= 0:
        if i == 0 or text[i - 1] == "\n":
            m = rx.match(text, i)
            if m:
                out.append((i, m.start(1), m.end(1), int(m.group(1))))
        pos = i + len(word)
    return out


def parse_cpuinfo(text: str, source: str = "/proc/cpuinfo") -> CpuInfo:
    """Split cpuinfo into blocks and surrounding text. Raises ParseError on duplicate CPU numbers."""
    arch = detect_arch(text)
    s390 = arch == "s390x"
    starts = _block_starts(text, s390)
    pieces: list[str | CpuBlock | S390Header] = []
    seen: set[int] = set()
    pos = 0
    for i, (line_start, n0, n1, cpu) in enumerate(starts):
        if cpu in seen:
            raise ParseError(source, f"duplicate block for CPU {cpu}", line=text[line_start:n1])
        seen.add(cpu)
        nxt = starts[i + 1][0] if i + 1 < len(starts) else len(text)
        if s390:
            # show_cpuinfo() prints "\ncpu number ..." : the block owns the blank line before it.
            owns_blank = line_start >= 2 and text[line_start - 2:line_start] == "\n\n" and line_start - 1 >= pos
            begin = line_start - 1 if owns_blank else line_start
            para_end = text.find("\n\n", line_start)
            end = nxt if para_end < 0 or para_end + 1 > nxt else para_end + 1
        else:
            begin = line_start
            para_end = text.find("\n\n", line_start)
            end = nxt if para_end < 0 or para_end + 2 > nxt else para_end + 2
        if begin > pos:
            head = text[pos:begin]
            if s390 and not pieces:
                pieces.append(_parse_s390_header(head, source))
            else:
                pieces.append(head)
        pieces.append(CpuBlock(cpu, text[begin:end], n0 - begin, n1 - begin))
        pos = end
    if pos < len(text):
        tail = text[pos:]
        if s390 and not pieces:
            pieces.append(_parse_s390_header(tail, source))
        else:
            pieces.append(tail)
    return CpuInfo(arch, tuple(pieces), text.endswith("\n"))
