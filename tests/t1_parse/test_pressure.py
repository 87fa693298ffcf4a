"""parse.pressure: the PSI format of psi.rst, round-tripped exactly, and its error matrix."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylxcfs.errors import ParseError
from pylxcfs.parse.pressure import PressureLine, format_pressure, parse_pressure

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
FIXTURE_FILES = sorted(p for p in HOSTS.glob("*/**/*") if p.is_file() and (
    p.parent.name == "pressure" or p.name.endswith(".pressure")))


def test_fixtures_have_pressure_files() -> None:
    assert len(FIXTURE_FILES) >= 8, FIXTURE_FILES


@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: str(p.relative_to(HOSTS)))
def test_fixture_files_round_trip(path: Path) -> None:
    text = path.read_text()
    assert format_pressure(parse_pressure(text, str(path))) == text


def test_this_kernels_files_round_trip() -> None:
    # Whatever this kernel has (cpu, memory, io; irq with CONFIG_IRQ_TIME_ACCOUNTING); PSI is on here.
    files = sorted(Path("/proc/pressure").glob("*"))
    assert {"cpu", "memory", "io"} <= {p.name for p in files}, "this machine's kernel has PSI"
    for path in files:
        text = path.read_text()
        assert format_pressure(parse_pressure(text, str(path))) == text


def test_values_in_hundredths_and_usec() -> None:
    p = parse_pressure("some avg10=57.34 avg60=0.05 avg300=100.00 total=121962332\n"
                       "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert p.line("some") == PressureLine("some", 5734, 5, 10000, 121962332)
    assert p.line("full") == PressureLine("full", 0, 0, 0, 0)


def test_cpu_before_5_13_has_only_some() -> None:
    text = "some avg10=1.00 avg60=2.00 avg300=3.00 total=4\n"
    p = parse_pressure(text)
    assert p.line("full") is None and format_pressure(p) == text


def test_irq_has_only_full() -> None:
    # kernel/sched/psi.c: irq pressure prints only its "full" line (6.1+).
    text = "full avg10=0.20 avg60=0.10 avg300=0.00 total=77\n"
    p = parse_pressure(text)
    assert p.line("some") is None and format_pressure(p) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",  # no kind
        "half avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",  # unknown kind
        "some avg10=0.0 avg60=0.00 avg300=0.00 total=0\n",  # one decimal: not %02lu
        "some avg10=1 avg60=0.00 avg300=0.00 total=0\n",
        "some avg10=-1.00 avg60=0.00 avg300=0.00 total=0\n",
        "some avg10=0.00 avg60=0.00 avg300=0.00\n",  # no total
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0 extra=1\n",
        "some avg60=0.00 avg10=0.00 avg300=0.00 total=0\n",  # order is fixed
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=x\n",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    ],
)
def test_malformed_is_a_parse_error(text: str) -> None:
    with pytest.raises(ParseError):
        parse_pressure(text, "cpu.pressure")
