"""Kernel CPU list format ("0-3,8") <-> frozenset[int] (pure; no I/O).

Role: the one parser and formatter for cpuset.cpus, cpuset.effective_cpus, cpuset.cpus.effective and
/sys/devices/system/cpu/online. The kernel prints these with bitmap_print_to_pagebuf(list=true)
(lib/bitmap-str.c): ascending, comma-separated, runs of two or more consecutive CPUs as "a-b", an empty set
as an empty line. `format_cpuset` produces exactly that form, so format(parse(s)) == s for every canonical s
and parse(format(x)) == x for every set x.

Strict: anything else (reversed ranges, empty elements, signs, junk) raises ParseError, because a mis-read
cpuset would silently show a container the wrong CPUs. Numbers above MAX_CPU are refused so that a hostile
or corrupt file cannot make us build a huge set (the kernel's NR_CPUS tops out at 8192).
"""

from __future__ import annotations

from collections.abc import Iterable

from pylxcfs.errors import ParseError

__all__ = ["MAX_CPU", "format_cpuset", "parse_cpuset"]

MAX_CPU = 65535

# Hot path: cpuset strings are tiny and mostly one of a handful of values; parsing is memoised by text.
_CACHE: dict[str, frozenset[int]] = {}
_CACHE_MAX = 1024


def _num(tok: str, text: str, source: str) -> int:
    # str.isdigit() accepts non-ASCII digits ("²"); the kernel only prints ASCII 0-9.
    if not tok or not tok.isascii() or not tok.isdigit():
        raise ParseError(source, f"bad CPU number {tok!r}", line=text)
    n = int(tok)
    if n > MAX_CPU:
        raise ParseError(source, f"CPU number {n} above {MAX_CPU}", line=text)
    return n


def parse_cpuset(text: str, source: str = "cpuset") -> frozenset[int]:
    """Parse a CPU list ("0-3,8", "" or "\\n" = empty set). Raises ParseError on malformed input."""
    hit = _CACHE.get(text)
    if hit is not None:
        return hit
    s = text.strip()
    cpus: set[int] = set()
    if s:
        for part in s.split(","):
            lo_s, dash, hi_s = part.partition("-")
            lo = _num(lo_s, text, source)
            if not dash:
                cpus.add(lo)
                continue
            hi = _num(hi_s, text, source)
            if hi < lo:
                raise ParseError(source, f"reversed range {part!r}", line=text)
            cpus.update(range(lo, hi + 1))
    out = frozenset(cpus)
    if len(_CACHE) >= _CACHE_MAX:
        _CACHE.clear()
    _CACHE[text] = out
    return out


def format_cpuset(cpus: Iterable[int]) -> str:
    """Format CPUs as the kernel does ("0-3,8"); the empty set is "". Raises ValueError on negatives."""
    nums = sorted(set(cpus))
    if nums and nums[0] < 0:
        raise ValueError(f"negative CPU number {nums[0]}")
    parts: list[str] = []
    i = 0
    n = len(nums)
    while i < n:
        j = i
        while j + 1 < n and nums[j + 1] == nums[j] + 1:
            j += 1
        parts.append(str(nums[i]) if i == j else f"{nums[i]}-{nums[j]}")
        i = j + 1
    return ",".join(parts)
