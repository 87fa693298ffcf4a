"""parse_blkio_rwstat's fast path (one shape fullmatch + split, issue 5) returns exactly what the strict
line-by-line parser returns, for kernel-shaped texts (generated) and for this machine's real blkio files; texts
of any other shape take the strict parser, so malformed input still raises ParseError naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pylxcfs.errors import ParseError
from pylxcfs.parse.blkio import _parse_blkio_rwstat_strict, parse_blkio_rwstat

OPS = ("Read", "Write", "Sync", "Async", "Discard", "Total")
devs = st.tuples(st.integers(0, 4095), st.integers(0, 1 << 20))
rows = st.lists(st.tuples(devs, st.sampled_from(OPS), st.integers(0, 1 << 64)), max_size=40)


def kernel_text(rs: list[tuple[tuple[int, int], str, int]], total: int, newline: bool) -> str:
    body = "".join(f"{ma}:{mi} {op} {v}\n" for (ma, mi), op, v in rs)
    return body + f"Total {total}" + ("\n" if newline else "")


@settings(max_examples=300, deadline=None)
@given(rows, st.integers(0, 1 << 64), st.booleans())
def test_fast_equals_strict_on_kernel_shaped_text(rs: list[tuple[tuple[int, int], str, int]], total: int,
                                                  newline: bool) -> None:
    text = kernel_text(rs, total, newline)
    assert parse_blkio_rwstat(text, "f") == _parse_blkio_rwstat_strict(text, "f")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789: \nRWTotalx", max_size=80))
def test_any_text_parses_like_strict_or_raises_like_strict(text: str) -> None:
    try:
        want = _parse_blkio_rwstat_strict(text, "f")
    except ParseError:
        with pytest.raises(ParseError):
            parse_blkio_rwstat(text, "f")
        return
    assert parse_blkio_rwstat(text, "f") == want


def test_this_machines_blkio_files() -> None:
    files = [p for p in Path("/sys/fs/cgroup/blkio").glob("blkio*io_serviced*") if p.is_file()]
    files += [p for p in Path("/sys/fs/cgroup/blkio").glob("blkio*io_service_bytes*") if p.is_file()]
    assert files
    for p in files:
        text = p.read_text()
        assert parse_blkio_rwstat(text, str(p)) == _parse_blkio_rwstat_strict(text, str(p))
