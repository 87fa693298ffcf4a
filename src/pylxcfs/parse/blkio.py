"""Parsers for per-device block I/O statistics in cgroupfs (pure: text in, plain dicts out).

v1 "rwstat" files (blkio.io_serviced_recursive, blkio.throttle.io_service_bytes, blkio.bfq.*, ...;
block/blk-cgroup-rwstat.c, Documentation/admin-guide/cgroup-v1/blkio-controller.rst) look like
    8:0 Read 10
    8:0 Write 3
    8:0 Sync 13
    8:0 Async 0
    8:0 Discard 0
    8:0 Total 13
    Total 13
v2 io.stat (Documentation/admin-guide/cgroup-v2.rst "IO Interface Files") looks like
    8:16 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0
with optional extra keys (iocost "cost.*", iolatency "use_delay=", debug keys) that are kept as they are.
"""

from __future__ import annotations

import re

from pylxcfs.errors import ParseError
from pylxcfs.parse.diskstats import DevT


def _devt(tok: str, source: str, lineno: int, line: str) -> DevT:
    major, sep, minor = tok.partition(":")
    if not sep or not major.isdigit() or not minor.isdigit():
        raise ParseError(source, "bad MAJ:MIN", lineno, line)
    return (int(major), int(minor))


# The exact shape the kernel prints (blk-cgroup-rwstat.c: "%s %s %llu\n" rows, then "Total %llu\n").
_RWSTAT_SHAPE = re.compile(r"(?:\d+:\d+ \S+ \d+\n)*Total \d+\n?")


def parse_blkio_rwstat(text: str, source: str) -> dict[DevT, dict[str, int]]:
    """v1 `MAJ:MIN Op value` lines -> {dev: {"Read": n, "Write": n, ...}}; the trailing `Total N` is dropped."""
    # Fast path (this runs up to 3 times per open of diskstats): when the whole text has the kernel's exact
    # shape (one fullmatch, ~0.6 us), its whitespace-split tokens are (dev, op, value) triples plus the Total
    # pair; ~1 us less per file than a findall of rows. Anything else goes to the strict loop below, which
    # accepts the same rows and reports the offending line.
    if _RWSTAT_SHAPE.fullmatch(text):
        t = text.split()
        fast: dict[DevT, dict[str, int]] = {}
        cur_tok = ""
        cur: dict[str, int] = {}
        for i in range(0, len(t) - 2, 3):
            tok = t[i]
            if tok != cur_tok:
                major, _, minor = tok.partition(":")
                cur = fast.setdefault((int(major), int(minor)), {})
                cur_tok = tok
            cur[t[i + 1]] = int(t[i + 2])
        return fast
    return _parse_blkio_rwstat_strict(text, source)


def _parse_blkio_rwstat_strict(text: str, source: str) -> dict[DevT, dict[str, int]]:
    out: dict[DevT, dict[str, int]] = {}
    cur_tok = ""
    cur: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if len(parts) == 3:
            tok, op, val = parts
            if tok != cur_tok:  # the kernel prints a device's rows together: parse MAJ:MIN once per device
                cur = out.setdefault(_devt(tok, source, lineno, line), {})
                cur_tok = tok
            if not val.isdigit():
                raise ParseError(source, "non-integer value", lineno, line)
            cur[op] = int(val)
        elif not parts or (parts[0] == "Total" and len(parts) == 2):
            continue  # blank, or the sum over devices: per-device rows carry everything we need
        else:
            raise ParseError(source, "expected 'MAJ:MIN Op value'", lineno, line)
    return out


def parse_io_stat(text: str, source: str) -> dict[DevT, dict[str, int]]:
    """v2 io.stat -> {dev: {"rbytes": n, "wbytes": n, "rios": n, ...}}; non-integer extra keys are skipped."""
    out: dict[DevT, dict[str, int]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        dev = _devt(parts[0], source, lineno, line)
        kv = out.setdefault(dev, {})
        for tok in parts[1:]:
            key, sep, val = tok.partition("=")
            if not sep:
                raise ParseError(source, f"expected key=value, got {tok!r}", lineno, line)
            if val.isdigit():
                kv[key] = int(val)
            elif key in _IO_STAT_KEYS:
                raise ParseError(source, f"non-integer {key}", lineno, line)
            # else: an optional key with a non-integer value (e.g. iocost "cost.vrate=100.00"): not ours
    return out


_IO_STAT_KEYS = frozenset({"rbytes", "wbytes", "rios", "wios", "dbytes", "dios"})
