"""parse/stat.py: cpu lines, kept lines, btime, and the error matrix."""

from __future__ import annotations

import pytest

from pylxcfs.errors import ParseError
from pylxcfs.parse.stat import parse_stat

from .conftest import HOSTS

REAL = (HOSTS / "x86_64-debian12-stat" / "proc" / "stat").read_text()  # this machine's, verbatim


def test_this_machine() -> None:
    s = parse_stat(REAL)
    lines = REAL.splitlines()
    assert sorted(s.per_cpu) == [0, 1]
    assert s.total == tuple(int(x) for x in lines[0].split()[1:])
    # every non-cpu line is kept verbatim and in order
    assert s.other == tuple(line for line in lines if not line.startswith("cpu"))
    assert [o.split()[0] for o in s.other] == ["intr", "ctxt", "btime", "processes", "procs_running",
                                               "procs_blocked", "softirq"]
    assert s.btime is not None and s.btime_index is not None
    assert s.other[s.btime_index] == f"btime {s.btime}"


def test_columns_summed_by_kernel_match() -> None:
    s = parse_stat(REAL)
    assert s.total is not None
    # The kernel's aggregate line is the column sum of the cpuN lines up to rounding: it converts the summed
    # nanoseconds to ticks once (fs/proc/stat.c), so it may exceed the sum of truncated rows by < 1 per CPU.
    n = len(s.per_cpu)
    for col, tot in zip(zip(*s.per_cpu.values(), strict=True), s.total, strict=True):
        assert 0 <= tot - sum(col) <= n


def test_old_kernel_short_lines_padded() -> None:
    # Kernels before 2.6.33 have no guest_nice (and before 2.6.24 no guest) column.
    s = parse_stat("cpu  1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n")
    assert s.per_cpu[0] == (1, 2, 3, 4, 5, 6, 7, 8, 0, 0)


def test_unknown_lines_kept() -> None:
    s = parse_stat("cpu  1 0 1 1\ncpu0 1 0 1 1\nfuture_key 1 2 3\nbtime 5\n")
    assert s.other == ("future_key 1 2 3", "btime 5")
    assert s.btime == 5 and s.btime_index == 1


def test_cpufreq_like_labels_not_cpu_rows() -> None:
    # a line starting with "cpu" but not "cpu"/"cpuN" is an unknown line, kept verbatim
    s = parse_stat("cpu  1 0 1 1\ncpu0 1 0 1 1\ncpufoo 3\n")
    assert s.other == ("cpufoo 3",)


@pytest.mark.parametrize("bad", [
    "cpu0 1 2 x 4\n",  # non-numeric
    "cpu0 1 2\n",  # too few columns
    "cpu0 1 2 3 4\ncpu0 1 2 3 4\n",  # duplicate
    "cpu  1 2 3 4\ncpu  1 2 3 4\n",  # duplicate aggregate
    "btime x\n",
    "btime 1 2\n",
    "cpu0 1 -2 3 4\n",
])
def test_malformed_raises(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_stat(bad)


def test_error_has_line_number() -> None:
    with pytest.raises(ParseError) as ei:
        parse_stat("cpu  1 2 3 4\nintr 1\ncpu0 1 2 q 4\n")
    assert ei.value.lineno == 3


def test_cpu_line_after_other_lines_takes_general_path() -> None:
    # not a kernel layout, but it must not let a host cpuN row slip into the verbatim tail
    s = parse_stat("intr 1\ncpu  1 0 1 1\ncpu0 1 0 1 1\nbtime 7\n")
    assert list(s.per_cpu) == [0] and s.total == (1, 0, 1, 1, 0, 0, 0, 0, 0, 0)
    assert s.rest == "intr 1\nbtime 7\n" and s.btime == 7
    assert s.rest[s.btime_span[0]:s.btime_span[1]] == "7" if s.btime_span else False


def test_btime_first_line_of_rest_and_no_final_newline() -> None:
    s = parse_stat("cpu  1 0 1 1\ncpu0 1 0 1 1\nbtime  123\nprocesses 4")
    assert s.btime == 123 and s.btime_span is not None
    assert s.rest[s.btime_span[0]:s.btime_span[1]] == "123"
    assert s.other == ("btime  123", "processes 4")
