"""Pure render functions of /proc/swaps and /proc/uptime: layout and properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pylxcfs.cgroups.memory import MemorySnapshot, MemoryStat, SwapUsage
from pylxcfs.context import ViewOptions
from pylxcfs.views.swaps import render_swaps
from pylxcfs.views.uptime import render_uptime

HDR = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority"
_ZERO = MemoryStat(*([0] * 17), has_hierarchical_limit=False, hierarchical_limit=None,
                   hierarchical_memsw_limit=None)


def _snap(limit: int | None, usage: int, swappiness: int | None = None) -> MemorySnapshot:
    return MemorySnapshot(1 << 30, 1 << 20, _ZERO, SwapUsage(limit, usage), swappiness)


def test_swaps_kernel_columns_small_and_large() -> None:
    # mm/swapfile.c swap_show(): an extra tab after a number below 10^7 keeps the columns aligned
    small = render_swaps(HDR, 4194300, _snap(256 << 20, 10 << 20), ViewOptions())
    assert small == HDR + "\n" + "none" + " " * 36 + "virtual\t\t262144\t\t10240\t\t0\n"
    big = render_swaps(HDR, 50_000_000, _snap(None, 20_000_000 * 1024), ViewOptions())
    assert big.splitlines()[1] == "none" + " " * 36 + "virtual\t\t50000000\t20000000\t0"


def test_swaps_header_only_cases() -> None:
    assert render_swaps(HDR, 4194300, _snap(256 << 20, 0), ViewOptions(disable_swap=True)) == HDR + "\n"
    assert render_swaps(HDR, 0, _snap(None, 0), ViewOptions()) == HDR + "\n"  # host without swap
    assert render_swaps(HDR, 4194300, _snap(0, 0), ViewOptions()) == HDR + "\n"  # swap limit 0
    none = MemorySnapshot(1, 0, _ZERO, None, None)  # swap accounting off
    assert render_swaps(HDR, 4194300, none, ViewOptions()) == HDR + "\n"


def test_swappiness_zero_caps_total_at_used() -> None:
    out = render_swaps(HDR, 4194300, _snap(256 << 20, 8 << 20, swappiness=0), ViewOptions())
    assert out.splitlines()[1].split()[2:4] == ["8192", "8192"]


@given(st.none() | st.integers(0, 1 << 44), st.integers(0, 1 << 44), st.integers(0, 1 << 40),
       st.none() | st.integers(0, 100))
def test_swaps_never_negative_nor_above_host(limit: int | None, usage: int, host_kib: int,
                                             swappiness: int | None) -> None:
    out = render_swaps(HDR, host_kib, _snap(limit, usage, swappiness), ViewOptions())
    lines = out.splitlines()
    assert lines[0] == HDR
    if len(lines) == 2:
        size, used = (int(x) for x in lines[1].split()[2:4])
        assert 0 <= used <= size <= host_kib


@given(st.floats(0, 1e9, allow_nan=False), st.integers(0, 1 << 40), st.floats(0, 1e9, allow_nan=False))
def test_uptime_never_negative_and_idle_at_most_age(host_up: float, start: int, busy: float) -> None:
    age, idle = (float(x) for x in render_uptime(host_up, start, busy, clk_tck=100).split())
    assert age >= 0.0 and 0.0 <= idle <= age


def test_host_swap_total_is_the_sum_of_devices() -> None:
    from pylxcfs.views.swaps import host_swap_kib

    text = HDR + "\n/dev/sda3 partition\t2097148\t\t0\t\t-2\n/swapfile file\t\t1048572\t\t0\t\t-3\n"
    assert host_swap_kib(text) == 3145720
    assert host_swap_kib(HDR + "\n") == 0
