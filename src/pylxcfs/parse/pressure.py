"""Parser and formatter for pressure stall information (PSI): /proc/pressure/{cpu,memory,io,irq} and the
cgroup v2 files {cpu,memory,io,irq}.pressure, which have the same format (Documentation/accounting/psi.rst).

Each line is "<kind> avg10=A.AA avg60=A.AA avg300=A.AA total=N": kind "some" or "full", the averages are
percentages with exactly two decimals (kernel/sched/psi.c psi_show: "%lu.%02lu"), total is the cumulative stall
time in microseconds. Which lines a file has depends on the kernel: cpu has only "some" before 5.13 and both
since (its system-level "full" is always zero); memory and io always have both; irq (6.1+) has only "full".
So lines are kept in the order the file has them, never invented.

Pure: text in, frozen records out; format_pressure() turns them back into the kernel's exact text.
Averages are kept as integer hundredths so the round trip is exact (no float formatting).
"""

from __future__ import annotations

from dataclasses import dataclass

from pylxcfs.errors import ParseError

KINDS = ("some", "full")
_KEYS = ("avg10", "avg60", "avg300", "total")


@dataclass(frozen=True, slots=True)
class PressureLine:
    """One "some"/"full" line. Averages in hundredths of a percent (avg10=1.55 -> 155), total in usec."""

    kind: str  # "some" or "full"
    avg10_centi: int
    avg60_centi: int
    avg300_centi: int
    total_usec: int


@dataclass(frozen=True, slots=True)
class Pressure:
    """A whole pressure file: its lines in file order (one per kind at most)."""

    lines: tuple[PressureLine, ...]

    def line(self, kind: str) -> PressureLine | None:
        """The "some" or "full" line, None when the file has none (cpu before 5.13 has no "full")."""
        for ln in self.lines:
            if ln.kind == kind:
                return ln
        return None


def _centi(value: str, source: str, lineno: int, line: str) -> int:
    # "%lu.%02lu": digits, a dot, exactly two digits. Anything else is not the kernel's.
    whole, dot, frac = value.partition(".")
    if not dot or not whole.isdigit() or len(frac) != 2 or not frac.isdigit():
        raise ParseError(source, f"bad average {value!r}", lineno, line)
    return int(whole) * 100 + int(frac)


def parse_pressure(text: str, source: str = "pressure") -> Pressure:
    """Parse a PSI file. Strict: an unknown kind, a missing or extra field, or a repeated kind is a ParseError
    (the view then serves the host file instead of a half-understood one)."""
    out: list[PressureLine] = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        kind = parts[0]
        if kind not in KINDS:
            raise ParseError(source, f"unknown line kind {kind!r}", lineno, line)
        if kind in seen:
            raise ParseError(source, f"second {kind!r} line", lineno, line)
        seen.add(kind)
        if len(parts) != 5:
            raise ParseError(source, "expected avg10= avg60= avg300= total=", lineno, line)
        vals: list[str] = []
        for key, item in zip(_KEYS, parts[1:], strict=True):
            k, eq, v = item.partition("=")
            if not eq or k != key:
                raise ParseError(source, f"expected {key}=", lineno, line)
            vals.append(v)
        if not vals[3].isdigit():
            raise ParseError(source, f"bad total {vals[3]!r}", lineno, line)
        out.append(PressureLine(kind, _centi(vals[0], source, lineno, line), _centi(vals[1], source, lineno, line),
                                _centi(vals[2], source, lineno, line), int(vals[3])))
    if not out:
        raise ParseError(source, "no some/full line")
    return Pressure(tuple(out))


def _fmt(centi: int) -> str:
    return f"{centi // 100}.{centi % 100:02d}"


def format_pressure(p: Pressure) -> str:
    """The kernel's text for `p` (psi_show's layout, one line per kind, newline-terminated)."""
    return "".join(
        f"{ln.kind} avg10={_fmt(ln.avg10_centi)} avg60={_fmt(ln.avg60_centi)} avg300={_fmt(ln.avg300_centi)} "
        f"total={ln.total_usec}\n"
        for ln in p.lines
    )
