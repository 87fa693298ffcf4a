"""The mounted daemon read from inside container-like processes on this real hybrid-v1 host.

Each container is PID 1 of a fresh pid namespace whose init was born inside a real v1 cgroup created by the test
(support.pidns / support.cgv1). Expected values come from the limits set here and from the host's own files,
never from our output. What lxcfs does and why: LXCFS resolves caller -> init -> init's
cgroups, with per-file formulas in its proc_fuse.c; the original product page fixes the cpuinfo topology fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import pidns
from support.cgv1 import CgroupTree, V1Cgroup

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

MEM = "proc/meminfo"
CPUINFO = "proc/cpuinfo"
STAT = "proc/stat"
UPTIME = "proc/uptime"
SWAPS = "proc/swaps"
ONLINE = "sys/devices/system/cpu/online"
ALL = (MEM, CPUINFO, STAT, UPTIME, SWAPS, ONLINE)

# Extra swap allowed by the memsw limit of the "limited" container (memory.txt: memsw = RAM + swap).
SWAP_HEADROOM = 256 * ex.MIB


@dataclass(frozen=True)
class Seen:
    """One container's reads of our files (first read of each, plus a second /proc/stat), and host context."""

    cg: V1Cgroup
    files: dict[str, str]
    stat_again: str
    pid: int
    host_uptime_after: float
    elapsed_s: float  # wall time from launching the container to the end of its reads
    wall_after: float  # time.time() right after the container exited


def _read_in(mnt: Path, cg: V1Cgroup) -> Seen:
    paths = [mnt / p for p in ALL] + [mnt / STAT]
    t0 = time.monotonic()
    r = pidns.read_files(paths, cgroups=[cg])
    elapsed = time.monotonic() - t0
    wall_after = time.time()
    host_up = ex.uptime(ex.host_file("/proc/uptime"))[0]
    files = {p: r[mnt / p] for p in ALL}
    return Seen(cg, files, r.all(mnt / STAT)[1], r.pid, host_up, elapsed, wall_after)


@pytest.fixture(scope="module")
def limited(cgtree: CgroupTree, ours: Mounted) -> Seen:
    """memory.limit_in_bytes = 1 GiB, memsw = 1 GiB + 256 MiB, cpuset.cpus = 0 (this host has 2 CPUs)."""
    cg = cgtree.child("limited", memory_limit=ex.GIB, memsw_limit=ex.GIB + SWAP_HEADROOM, cpus="0")
    return _read_in(ours.mnt, cg)


@pytest.fixture(scope="module")
def unlimited(cgtree: CgroupTree, ours: Mounted) -> Seen:
    """No memory limit anywhere on the path, cpuset = every host CPU (copied from the root cpuset)."""
    return _read_in(ours.mnt, cgtree.child("unlimited"))


# --- the limited container ----------------------------------------------------------------------------------------


def test_reader_really_is_a_pid_ns_init(limited: Seen) -> None:
    assert limited.pid == 1


def test_limited_memtotal_is_the_cgroup_limit(limited: Seen) -> None:
    mi = ex.meminfo(limited.files[MEM])
    assert mi["MemTotal"] == ex.GIB // ex.KIB == 1048576


def test_limited_meminfo_figures_fit_inside_the_limit(limited: Seen) -> None:
    mi = ex.meminfo(limited.files[MEM])
    total = mi["MemTotal"]
    assert 0 < mi["MemFree"] <= total
    assert mi["MemFree"] <= mi["MemAvailable"] <= total
    # The cgroup holds only this tiny reader, so the view must not show host-sized caches.
    for key in ("Cached", "Active", "Inactive", "Shmem", "Buffers"):
        assert mi[key] <= total, f"{key} {mi[key]} kB > MemTotal {total} kB"


def test_limited_meminfo_keeps_every_host_key_in_order(limited: Seen) -> None:
    # lxcfs rewrites known lines in place and copies the others: the key list is the host's.
    assert list(ex.meminfo(limited.files[MEM])) == list(ex.meminfo(ex.host_file("/proc/meminfo")))


def test_limited_swap_follows_memsw(limited: Seen) -> None:
    # v1: swap allowed = memsw limit - memory limit, never more than the host has (virtual-files.md §6.1/6.2).
    host_swap = ex.meminfo(ex.host_file("/proc/meminfo"))["SwapTotal"]
    expected_total = min(SWAP_HEADROOM // ex.KIB, host_swap)
    mi = ex.meminfo(limited.files[MEM])
    assert mi["SwapTotal"] == expected_total
    assert 0 <= mi["SwapFree"] <= mi["SwapTotal"]
    entries = ex.swaps_entries(limited.files[SWAPS])
    if expected_total == 0:
        assert entries == [], "no swap on this host: /proc/swaps must list no device"
    else:
        assert len(entries) == 1 and int(entries[0][2]) == expected_total


def test_limited_cpuinfo_has_one_processor_numbered_0(limited: Seen) -> None:
    blocks = ex.cpuinfo_blocks(limited.files[CPUINFO])
    assert [b["processor"] for b in blocks] == ["0"]


def test_limited_cpuinfo_block_is_host_cpu0(limited: Seen) -> None:
    # cpuset.cpus = 0: the one block shown is the host's CPU 0 (model, flags unchanged).
    host0 = ex.cpuinfo_blocks(ex.host_file("/proc/cpuinfo"))[0]
    mine = ex.cpuinfo_blocks(limited.files[CPUINFO])[0]
    for key in ("vendor_id", "model name", "flags", "cache size"):
        if key in host0:
            assert mine.get(key) == host0[key], key


def test_limited_cpuinfo_topology_follows_the_seed(limited: Seen) -> None:
    # Seed (product page): physical id counts up from 0, siblings 1, core id 0, cpu cores 1 (x86).
    # The C lxcfs 5.0.3 keeps the host's values here (siblings 2, core id 1 observed): a deliberate difference.
    for i, b in enumerate(ex.cpuinfo_blocks(limited.files[CPUINFO])):
        topo = (b.get("physical id"), b.get("siblings"), b.get("core id"), b.get("cpu cores"))
        assert topo == (str(i), "1", "0", "1"), f"processor {i}: (physical id, siblings, core id, cpu cores)"


def test_limited_stat_has_one_cpu_row(limited: Seen) -> None:
    rows = ex.stat_cpus(limited.files[STAT])
    assert rows[0].label == "cpu"
    assert limited.files[STAT].startswith("cpu  "), "aggregate line keeps the kernel's two spaces"
    assert [r.label for r in rows[1:]] == ["cpu0"]


def test_limited_stat_keeps_the_kernel_lines(limited: Seen) -> None:
    keys = ex.stat_keys(limited.files[STAT])
    host_keys = ex.stat_keys(ex.host_file("/proc/stat"))
    assert keys == host_keys


def test_limited_stat_total_is_sum_of_rows_and_monotonic(limited: Seen) -> None:
    for text in (limited.files[STAT], limited.stat_again):
        rows = ex.stat_cpus(text)
        sums = tuple(sum(col) for col in zip(*(r.cols for r in rows[1:]), strict=True))
        assert rows[0].cols == sums
    first, second = ex.stat_cpus(limited.files[STAT]), ex.stat_cpus(limited.stat_again)
    assert [r.label for r in first] == [r.label for r in second]
    for a, b in zip(first, second, strict=True):
        assert all(y >= x for x, y in zip(a.cols, b.cols, strict=True)), f"{a.label} went backwards: {a} -> {b}"


def test_limited_stat_times_are_the_cgroups(limited: Seen) -> None:
    # user+system of the container's CPU cannot exceed what cpuacct charged to its cgroup (read after it exited),
    # which for this short-lived reader is well under a second; host rows would show the host's whole history.
    usage_ns = int(limited.cg.read("cpuacct", "cpuacct.usage"))
    hz = ex.clk_tck()
    cpu0 = ex.stat_cpus(limited.files[STAT])[1]
    user, system = cpu0.cols[0], cpu0.cols[2]
    assert user + system <= usage_ns * hz // 1_000_000_000 + 2, (cpu0, usage_ns)


def test_limited_online_is_the_cpuset(limited: Seen) -> None:
    assert limited.files[ONLINE] == "0\n"


def test_limited_uptime_is_the_container_age(limited: Seen) -> None:
    age, idle = ex.uptime(limited.files[UPTIME])
    # The init was born at most `elapsed_s` before its read; allow scheduling slack.
    assert age <= limited.elapsed_s + 1.0
    assert age <= limited.host_uptime_after
    assert 0 <= idle <= age


# --- nesting: the smallest limit on the path wins ----------------------------------------------------------------


def test_nested_parent_limit_wins(cgtree: CgroupTree, ours: Mounted) -> None:
    cgtree.child("nest-small-parent", memory_limit=512 * ex.MIB)
    cg = cgtree.child("nest-small-parent/big-child", memory_limit=ex.GIB)
    r = pidns.read_files([ours.mnt / MEM], cgroups=[cg])
    assert ex.meminfo(r[ours.mnt / MEM])["MemTotal"] == 524288


def test_nested_child_limit_under_unlimited_parent(cgtree: CgroupTree, ours: Mounted) -> None:
    cgtree.child("nest-unlimited-parent")
    cg = cgtree.child("nest-unlimited-parent/small-child", memory_limit=256 * ex.MIB)
    r = pidns.read_files([ours.mnt / MEM], cgroups=[cg])
    assert ex.meminfo(r[ours.mnt / MEM])["MemTotal"] == 262144


def test_limit_above_host_ram_shows_host_memtotal(cgtree: CgroupTree, ours: Mounted) -> None:
    # MemTotal = min(host MemTotal, limit): a limit twice the host's RAM must not inflate the view.
    host_kib = ex.meminfo(ex.host_file("/proc/meminfo"))["MemTotal"]
    cg = cgtree.child("above-host", memory_limit=2 * host_kib * ex.KIB)
    r = pidns.read_files([ours.mnt / MEM], cgroups=[cg])
    assert ex.meminfo(r[ours.mnt / MEM])["MemTotal"] == host_kib


# --- no limit: host-sized view ----------------------------------------------------------------------------------


def test_unlimited_memtotal_is_host(unlimited: Seen) -> None:
    host = ex.meminfo(ex.host_file("/proc/meminfo"))
    mi = ex.meminfo(unlimited.files[MEM])
    assert mi["MemTotal"] == host["MemTotal"]
    assert 0 < mi["MemFree"] <= mi["MemTotal"]


def test_unlimited_sees_all_host_cpus(unlimited: Seen) -> None:
    host_online = ex.host_file("/sys/devices/system/cpu/online")
    n = len(ex.cpulist(host_online))
    assert len(ex.cpuinfo_blocks(unlimited.files[CPUINFO])) == n
    assert [b["processor"] for b in ex.cpuinfo_blocks(unlimited.files[CPUINFO])] == [str(i) for i in range(n)]
    assert len(ex.stat_cpus(unlimited.files[STAT])) == n + 1
    assert ex.cpulist(unlimited.files[ONLINE]) == ex.cpulist(host_online)


def test_limited_stat_btime_is_the_hosts_and_uptime_the_containers(limited: Seen) -> None:
    # btime stays the host's (as the C lxcfs keeps it): /proc/<pid>/stat start times count from the host's boot, and
    # ps computes a start as btime + starttime / HZ. The container's age is in /proc/uptime: at most the time since
    # we launched it.
    assert ex.stat_value(limited.files[STAT], "btime") == ex.stat_value(ex.host_file("/proc/stat"), "btime")
    age, _ = ex.uptime(limited.files[UPTIME])
    assert 0 <= age <= limited.elapsed_s + 0.5, (age, limited.elapsed_s)


# --- a cpuset that does not start at 0 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_cpu(cgtree: CgroupTree, ours: Mounted) -> Seen:
    """cpuset.cpus = 1: the container owns only the host's SECOND CPU."""
    return _read_in(ours.mnt, cgtree.child("second-cpu", cpus="1"))


def test_second_cpu_cpuinfo_shows_one_processor_from_0(second_cpu: Seen) -> None:
    blocks = ex.cpuinfo_blocks(second_cpu.files[CPUINFO])
    assert [b["processor"] for b in blocks] == ["0"]
    host1 = ex.cpuinfo_blocks(ex.host_file("/proc/cpuinfo"))[1]
    assert blocks[0].get("apicid") == host1.get("apicid"), "the block shown must be the host's CPU 1"


def test_second_cpu_stat_rows_and_online_agree(second_cpu: Seen) -> None:
    # One row, and whichever numbering is used, /proc/stat's cpuN rows and the online list must name the same
    # CPUs (tools such as top -1 and lscpu combine them). lxcfs 5.0 keeps the physical number in both ("cpu1", "1").
    rows = [r.label for r in ex.stat_cpus(second_cpu.files[STAT])[1:]]
    assert len(rows) == 1
    online = ex.cpulist(second_cpu.files[ONLINE])
    assert {int(label[3:]) for label in rows} == online, (rows, second_cpu.files[ONLINE])
