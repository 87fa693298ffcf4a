"""parse/diskstats.py: every /proc/diskstats field-count variant, /proc/partitions, and the error matrix."""

from __future__ import annotations

import pytest

from pylxcfs.errors import ParseError
from pylxcfs.parse.diskstats import parse_diskstats, parse_partitions

from .conftest import FIXTURES, HOSTS


def test_14_columns_kernel_before_4_18() -> None:
    (line,) = parse_diskstats("   8       0 sda 9153 2331 604516 63150 41733 54178 1023784 373402 0 85541 436468\n")
    assert (line.major, line.minor, line.name) == (8, 0, "sda")
    assert line.fields == (9153, 2331, 604516, 63150, 41733, 54178, 1023784, 373402, 0, 85541, 436468)


def test_18_columns_discards_since_4_18() -> None:
    (line,) = parse_diskstats(" 252       0 vdb 1000 0 8000 10 500 0 4000 5 0 15 15 10 0 80 1\n")
    assert len(line.fields) == 15
    assert line.fields[11:] == (10, 0, 80, 1)  # discards, merged, sectors, ms


def test_20_columns_flushes_since_5_5() -> None:
    text = " 254       0 vda 34012 8877 2478474 7025 11641 12440 1787624 4696 0 3324 12038 4782 38 125000 250 1860 66\n"
    (line,) = parse_diskstats(text)
    assert line.dev == (254, 0)
    assert len(line.fields) == 17 and line.fields[15:] == (1860, 66)


def test_7_columns_old_partition_rows() -> None:
    (line,) = parse_diskstats("   8       1 sda1 35713 1122730 106304 850432\n")
    assert line.fields == (35713, 1122730, 106304, 850432)


def test_future_kernel_extra_fields_are_kept() -> None:
    text = "   8       0 sda " + " ".join(str(i) for i in range(19)) + "\n"
    (line,) = parse_diskstats(text)
    assert len(line.fields) == 19


def test_blank_lines_skipped_and_order_kept() -> None:
    lines = parse_diskstats("\n   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n\n   7       1 loop1 0 0 0 0 0 0 0 0 0 0 0\n")
    assert [x.name for x in lines] == ["loop0", "loop1"]


@pytest.mark.parametrize(
    "bad",
    [
        "   8       0 sda 1 2 3\n",  # too few
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 11 12\n",  # 12 counters: no kernel printed that
        "   8       x sda 1 2 3 4 5 6 7 8 9 10 11\n",  # minor not a number
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 -11\n",  # negative
        "   8       0 sda 1 2 3 4 5 6 7 8 9 10 1.5\n",  # not an integer
    ],
)
def test_malformed_diskstats(bad: str) -> None:
    with pytest.raises(ParseError) as ei:
        parse_diskstats("   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0\n" + bad)
    assert ei.value.lineno == 2 and "/proc/diskstats" in str(ei.value)


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_every_fixture_host_parses(host: str) -> None:
    lines = parse_diskstats((FIXTURES / host / "proc" / "diskstats").read_text())
    assert lines and len({len(x.fields) for x in lines}) == 1
    parts = parse_partitions((FIXTURES / host / "proc" / "partitions").read_text())
    assert parts


def test_partitions() -> None:
    text = "major minor  #blocks  name\n\n 254        0  268435456 vda\n   7        0      16384 loop0\n"
    parts = parse_partitions(text)
    assert [(p.dev, p.blocks_kib, p.name) for p in parts] == [((254, 0), 268435456, "vda"), ((7, 0), 16384, "loop0")]


@pytest.mark.parametrize("bad", [" 254 0 vda\n", " 254 0 x vda\n", " 254 0 1 vda extra\n"])
def test_malformed_partitions(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_partitions("major minor  #blocks  name\n\n" + bad)


def test_this_machines_files_parse() -> None:
    # A check of the parser against the live kernel (6.18 here: 17 counters per line).
    with open("/proc/diskstats") as f:
        lines = parse_diskstats(f.read())
    assert lines and all(len(x.fields) >= 11 for x in lines)
    with open("/proc/partitions") as f:
        assert parse_partitions(f.read())


def test_wanted_filter_skips_other_lines_unexamined() -> None:
    text = "   7       0 loop0 garbage\n   8       0 sda 1 2 3 4 5 6 7 8 9 10 11\n"
    (line,) = parse_diskstats(text, wanted={(8, 0)})
    assert line.name == "sda" and line.fields[0] == 1
    with pytest.raises(ParseError):
        parse_diskstats(text)  # without the filter the bad line is an error
    with pytest.raises(ParseError):
        parse_diskstats("x 0 sda 1 2 3 4\n", wanted={(8, 0)})
