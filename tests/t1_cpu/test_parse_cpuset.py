"""parse/cpuset.py: the kernel CPU-list format, strict errors, exact round trips (incl. lxcfs's
tests/cpusetrange.c cases)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pylxcfs.errors import ParseError
from pylxcfs.parse.cpuset import MAX_CPU, format_cpuset, parse_cpuset


@pytest.mark.parametrize(("text", "cpus"), [
    ("0", {0}),
    ("0-3", {0, 1, 2, 3}),
    ("0-1,4,6-7", {0, 1, 4, 6, 7}),
    ("1,2", {1, 2}),
    ("1-3,5", {1, 2, 3, 5}),
    ("1,4-5", {1, 4, 5}),
    ("", set()),
    ("\n", set()),
    ("0-1\n", {0, 1}),
])
def test_parse(text: str, cpus: set[int]) -> None:
    assert parse_cpuset(text) == frozenset(cpus)


def test_lxcfs_cpusetrange_cases() -> None:
    # lxcfs tests/cpusetrange.c: membership checks of its cpu_in_cpuset().
    assert {1, 2} <= parse_cpuset("1,2") and 4 not in parse_cpuset("1,2")
    assert {1, 5} <= parse_cpuset("1-3,5") and 4 not in parse_cpuset("1-3,5")
    assert {1, 5} <= parse_cpuset("1,4-5") and 6 not in parse_cpuset("1,4-5")
    assert 6 not in parse_cpuset("") and 6 not in parse_cpuset("\n")


@pytest.mark.parametrize("bad", ["3-1", "1,,2", "-1", "1-", "a", "1-2-3", "0x1", "1 2", ",", "²", f"{MAX_CPU + 1}",
                                 "0-99999999"])
def test_malformed_raises(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_cpuset(bad, "cpuset.cpus")


def test_error_names_source() -> None:
    with pytest.raises(ParseError, match=r"cpuset\.effective_cpus"):
        parse_cpuset("x", "/sys/fs/cgroup/cpuset/ct/cpuset.effective_cpus")


@pytest.mark.parametrize(("cpus", "text"), [
    ({0}, "0"), ({0, 1}, "0-1"), ({0, 2}, "0,2"), ({0, 1, 2, 5, 7, 8}, "0-2,5,7-8"), (set(), ""),
])
def test_format_is_kernel_form(cpus: set[int], text: str) -> None:
    assert format_cpuset(cpus) == text


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError):
        format_cpuset([-1, 2])


@given(st.frozensets(st.integers(0, 300), max_size=60))
def test_roundtrip_set(cpus: frozenset[int]) -> None:
    assert parse_cpuset(format_cpuset(cpus)) == cpus


@given(st.frozensets(st.integers(0, 300), max_size=60))
def test_roundtrip_text(cpus: frozenset[int]) -> None:
    text = format_cpuset(cpus)  # every canonical string formats back to itself
    assert format_cpuset(parse_cpuset(text)) == text
