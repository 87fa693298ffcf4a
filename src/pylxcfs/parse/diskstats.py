"""Parsers for the host's /proc/diskstats and /proc/partitions (pure: text in, records out).

/proc/diskstats has grown over kernel versions (Documentation/admin-guide/iostats.rst, block/genhd.c
diskstats_show()); after `major minor name` a line carries:
  - 4 fields: partitions on kernels before 2.6.25 (reads, sectors read, writes, sectors written);
  - 11 fields: up to 4.17 (14 columns in all);
  - 15 fields: 4.18 added discards (18 columns);
  - 17 fields: 5.5 added flushes (20 columns).
Later kernels may append more; extra fields are kept, so a renderer can keep the host's column count.
/proc/partitions is `major minor  #blocks  name` (1 KiB blocks) after a header line and a blank line.
No I/O here; ParseError carries the source, the line number and the line.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from pylxcfs.errors import ParseError

DevT = tuple[int, int]  # (major, minor)

# Field counts after the name that a kernel has ever printed (see the module docstring).
KNOWN_FIELD_COUNTS = (4, 11, 15, 17)


@dataclass(frozen=True, slots=True)
class DiskstatsLine:
    """One /proc/diskstats line. `fields` are the counters after the name, in kernel order."""

    major: int
    minor: int
    name: str
    fields: tuple[int, ...]

    @property
    def dev(self) -> DevT:
        """(major, minor)."""
        return (self.major, self.minor)


@dataclass(frozen=True, slots=True)
class PartitionLine:
    """One /proc/partitions row; size in 1 KiB blocks as the kernel prints it."""

    major: int
    minor: int
    blocks_kib: int
    name: str

    @property
    def dev(self) -> DevT:
        """(major, minor)."""
        return (self.major, self.minor)


def _ints(parts: list[str], source: str, lineno: int, line: str) -> tuple[int, ...]:
    try:
        vals = tuple(map(int, parts))
    except ValueError:
        raise ParseError(source, "non-integer field", lineno, line) from None
    if vals and min(vals) < 0:
        raise ParseError(source, "negative field", lineno, line)
    return vals


def parse_diskstats(text: str, source: str = "/proc/diskstats",
                    wanted: Collection[DevT] | None = None) -> tuple[DiskstatsLine, ...]:
    """Lines of /proc/diskstats, in file order. Accepts 4, 11, 15, 17 or more counters per line.

    With `wanted`, only those devices' lines are converted and checked (a per-open fast path: the
    container usually sees one or two of the host's devices); other lines are skipped unexamined.
    """
    out: list[DiskstatsLine] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if wanted is not None:
            try:
                if (int(parts[0]), int(parts[1])) not in wanted:
                    continue
            except (ValueError, IndexError):
                raise ParseError(source, "bad major/minor", lineno, line) from None
        if len(parts) < 3 + 4:
            raise ParseError(source, "too few fields", lineno, line)
        nfields = len(parts) - 3
        if nfields not in KNOWN_FIELD_COUNTS and nfields < KNOWN_FIELD_COUNTS[-1]:
            # 5..10, 12..14, 16: no kernel ever printed these; a truncated or corrupted line.
            raise ParseError(source, f"unexpected field count {nfields}", lineno, line)
        vals = _ints(parts[:2] + parts[3:], source, lineno, line)
        out.append(DiskstatsLine(vals[0], vals[1], parts[2], vals[2:]))
    return tuple(out)


def parse_partitions(text: str, source: str = "/proc/partitions") -> tuple[PartitionLine, ...]:
    """All device rows of /proc/partitions (the header and blank lines are skipped)."""
    out: list[PartitionLine] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0] == "major":
            continue
        if len(parts) != 4:
            raise ParseError(source, "expected 4 fields", lineno, line)
        major, minor, blocks = _ints(parts[:3], source, lineno, line)
        out.append(PartitionLine(major, minor, blocks, parts[3]))
    return tuple(out)
