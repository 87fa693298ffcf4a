"""Parsers for the cgroupfs value shapes: a single value ("123", "max"), flat keyed files
("key 123" per line: memory.stat, cpu.stat), and nested keyed files ("8:0 rbytes=1 wbytes=2": io.stat).

Pure: text in, ints out. "max" becomes None (= unlimited) here and only here for single values.
"""

from __future__ import annotations

from pylxcfs.errors import ParseError

# cgroup v1 reports "unlimited" as PAGE_COUNTER_MAX rounded to pages: 9223372036854771712 with 4 KiB pages,
# a smaller number with 64 KiB pages (design.md §5.3). Anything at or above 2**62 bytes (4 EiB) is no real
# limit on any machine, so treat it as unlimited rather than matching one page size's constant.
V1_UNLIMITED_THRESHOLD = 1 << 62


def parse_limit(text: str, source: str = "limit") -> int | None:
    """A limit file: "max" (v2) or a near-LONG_MAX number (v1) -> None; else the number (bytes)."""
    s = text.strip()
    if s == "max":
        return None
    try:
        v = int(s)
    except ValueError:
        raise ParseError(source, "expected an integer or 'max'", line=s) from None
    if v >= V1_UNLIMITED_THRESHOLD:
        return None
    return v


def parse_int(text: str, source: str = "value") -> int:
    """A single-integer file (memory.current, memory.usage_in_bytes, cpuacct.usage...)."""
    s = text.strip()
    try:
        return int(s)
    except ValueError:
        raise ParseError(source, "expected an integer", line=s) from None


def parse_flat_keyed(text: str, source: str = "flat-keyed") -> dict[str, int]:
    """ "key value" lines -> {key: value}. Tolerant of unknown keys; strict on malformed values."""
    out: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        key, sep, val = line.partition(" ")
        if not sep:
            if not line.strip():
                continue
            raise ParseError(source, "expected 'key value'", lineno, line)
        try:
            out[key] = int(val)
        except ValueError:
            raise ParseError(source, "bad value", lineno, line) from None
    return out


def parse_nested_keyed(text: str, source: str = "nested-keyed") -> dict[str, dict[str, int]]:
    """ "name k1=v1 k2=v2" lines (io.stat) -> {name: {k1: v1, ...}}; "max" values become -1."""
    out: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        kv: dict[str, int] = {}
        for item in parts[1:]:
            k, sep, v = item.partition("=")
            if not sep:
                raise ParseError(source, "expected key=value", lineno, line)
            try:
                kv[k] = -1 if v == "max" else int(v)
            except ValueError:
                raise ParseError(source, "bad value", lineno, line) from None
        out[parts[0]] = kv
    return out
