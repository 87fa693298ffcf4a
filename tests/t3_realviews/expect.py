"""Small, independent parsers and host readers used to derive EXPECTED values in the realviews tests.

Role: turn the text of /proc-style files into numbers the tests compare, and read the host's own files. They are
written here on purpose (not imported from pylxcfs) so that a bug in our parsers cannot hide a bug in our views.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1 << 20
GIB = 1 << 30

_MEMINFO_LINE = re.compile(r"^([^:\s]+):\s+(\d+)(?: kB)?$")


def meminfo(text: str) -> dict[str, int]:
    """'Key:   123 kB' lines -> {key: 123}, in file order (values in kB, or pages for HugePages_*)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        m = _MEMINFO_LINE.match(line)
        assert m, f"malformed meminfo line: {line!r}"
        out[m.group(1)] = int(m.group(2))
    return out


def host_file(path: str) -> str:
    """A host file, read to EOF from this (host) process."""
    return Path(path).read_text()


def cpuinfo_blocks(text: str) -> list[dict[str, str]]:
    """x86 cpuinfo -> one {key: value} dict per 'processor' block (keys stripped of their tab padding)."""
    blocks: list[dict[str, str]] = []
    for chunk in text.strip("\n").split("\n\n"):
        if not chunk.strip():
            continue
        block: dict[str, str] = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            assert sep, f"malformed cpuinfo line: {line!r}"
            block[key.strip()] = value.strip()
        blocks.append(block)
    return blocks


@dataclass(frozen=True)
class StatCpu:
    """One cpu line of /proc/stat: its label and its numeric columns (USER_HZ ticks)."""

    label: str
    cols: tuple[int, ...]


def stat_cpus(text: str) -> list[StatCpu]:
    """All lines starting with 'cpu' (the aggregate first), in file order."""
    out = []
    for line in text.splitlines():
        if line.startswith("cpu"):
            label, *cols = line.split()
            out.append(StatCpu(label, tuple(int(c) for c in cols)))
    return out


def stat_keys(text: str) -> list[str]:
    """First word of every non-cpu line (intr, ctxt, btime, ...)."""
    return [line.split()[0] for line in text.splitlines() if line and not line.startswith("cpu")]


def stat_value(text: str, key: str) -> int:
    """The single number after a key such as 'btime' or 'ctxt'."""
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] == key:
            return int(parts[1])
    raise KeyError(key)


def uptime(text: str) -> tuple[float, float]:
    """'12.34 5.67\\n' -> (age_s, idle_s); strict about the shape the kernel prints."""
    assert re.fullmatch(r"\d+\.\d{2} \d+\.\d{2}\n", text), f"bad uptime {text!r}"
    a, b = text.split()
    return float(a), float(b)


def swaps_entries(text: str) -> list[list[str]]:
    """/proc/swaps rows after the header (each split on whitespace)."""
    lines = text.splitlines()
    assert lines and lines[0].startswith("Filename"), f"bad swaps header {text[:80]!r}"
    return [line.split() for line in lines[1:] if line.strip()]


_LOADAVG = re.compile(r"(\d+\.\d{2}) (\d+\.\d{2}) (\d+\.\d{2}) (\d+)/(\d+) (\d+)\n")


def loadavg(text: str) -> tuple[float, float, float, int, int, int]:
    """'0.08 0.02 0.01 1/4 17237\\n' -> (l1, l5, l15, running, total, last_pid)."""
    m = _LOADAVG.fullmatch(text)
    assert m, f"bad loadavg {text!r}"
    return (float(m[1]), float(m[2]), float(m[3]), int(m[4]), int(m[5]), int(m[6]))


def cpulist(text: str) -> set[int]:
    """'0-2,5\\n' -> {0, 1, 2, 5}."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out


def clk_tck() -> int:
    """USER_HZ, the unit of /proc/stat columns."""
    return os.sysconf("SC_CLK_TCK")
