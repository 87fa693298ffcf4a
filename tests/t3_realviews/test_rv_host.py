"""A reader on the host (this test process, in the daemon's own pid namespace) gets the host files unchanged.

Issue 2: "A caller on the host ... gets the host file unchanged". Host figures move between two reads, so each
field of our file must equal the host's value read just before or just after it, or lie between the two.
This is a deliberate difference from the C lxcfs, which virtualizes a host caller by its OWN cgroup
(virtual-files.md §4.1), so these tests fail by design when the harness is pointed at the C lxcfs.
"""

from __future__ import annotations

import pytest

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

ATTEMPTS = 5  # a field may move non-monotonically between the three reads; a pass-through matches within a few


def _bracketed(before: dict[str, int], ours: dict[str, int], after: dict[str, int]) -> list[str]:
    return [k for k, v in ours.items() if not min(before[k], after[k]) <= v <= max(before[k], after[k])]


def test_host_meminfo_is_the_host_file(ours: Mounted) -> None:
    mine = ours.mnt / "proc/meminfo"
    bad: list[str] = []
    for _ in range(ATTEMPTS):
        before = ex.host_file("/proc/meminfo")
        text = mine.read_text()
        after = ex.host_file("/proc/meminfo")
        b, o, a = ex.meminfo(before), ex.meminfo(text), ex.meminfo(after)
        assert list(o) == list(b), "key list differs from the host's"
        assert o["MemTotal"] == b["MemTotal"]
        bad = _bracketed(b, o, a)
        if not bad:
            # and byte-identical wherever the host did not change: same padding and units as the kernel.
            unchanged = [ln for ln in before.splitlines() if ln in set(after.splitlines())]
            assert [ln for ln in text.splitlines() if ln in set(unchanged)] == unchanged, "layout differs"
            return
    pytest.fail(f"fields outside the host's before/after range in {ATTEMPTS} attempts: {bad}")


def test_host_cpuinfo_online_swaps_are_the_host_files(ours: Mounted) -> None:
    host_cpuinfo = ex.host_file("/proc/cpuinfo")
    mine = (ours.mnt / "proc/cpuinfo").read_text()

    def no_mhz(t: str) -> list[str]:  # "cpu MHz" is sampled by the kernel at every read
        return [ln for ln in t.splitlines() if not ln.startswith("cpu MHz")]

    assert no_mhz(mine) == no_mhz(host_cpuinfo)
    assert (ours.mnt / "sys/devices/system/cpu/online").read_text() == ex.host_file("/sys/devices/system/cpu/online")
    assert (ours.mnt / "proc/swaps").read_text() == ex.host_file("/proc/swaps")


def test_host_stat_and_uptime_are_the_host_files(ours: Mounted) -> None:
    before_up = ex.uptime(ex.host_file("/proc/uptime"))[0]
    before_stat = ex.host_file("/proc/stat")
    up = ex.uptime((ours.mnt / "proc/uptime").read_text())[0]
    stat = (ours.mnt / "proc/stat").read_text()
    after_up = ex.uptime(ex.host_file("/proc/uptime"))[0]
    after_stat = ex.host_file("/proc/stat")
    assert before_up <= up <= after_up
    assert [r.label for r in ex.stat_cpus(stat)] == [r.label for r in ex.stat_cpus(before_stat)]
    assert ex.stat_keys(stat) == ex.stat_keys(before_stat)
    # idle and iowait are left out: with NO_HZ the kernel's own idle/iowait figures may step back between reads
    # (Documentation/filesystems/proc.rst, "iowait ... can decrease in certain conditions").
    for b, o, a in zip(ex.stat_cpus(before_stat), ex.stat_cpus(stat), ex.stat_cpus(after_stat), strict=True):
        steady = [i for i in range(len(o.cols)) if i not in (3, 4)]
        assert all(b.cols[i] <= o.cols[i] <= a.cols[i] for i in steady), (b, o, a)
    assert ex.stat_value(stat, "btime") == ex.stat_value(before_stat, "btime")

