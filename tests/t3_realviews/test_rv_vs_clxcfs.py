"""Side by side with the C lxcfs 5.0.3 (the reference), read by ONE container-like process from both mounts.

The reader is PID 1 of a fresh pid namespace in a v1 cgroup (1 GiB, memsw 1 GiB + 256 MiB, cpuset 0); it dirties
64 MiB of anonymous memory first so the cgroup's usage is worth comparing, then reads each file from our mount and
from the C lxcfs's mount back to back.

Compared exactly (same meaning, same inputs): MemTotal, SwapTotal, the processor count, online, the cpu row labels
of /proc/stat, the /proc/swaps entries.
Compared within a tolerance (same formula in lxcfs 5.0 and in virtual-files.md §6.1, but the cgroup moves a little
between the two reads): MemFree (total - usage), Cached (total_cache), Active/Inactive and their (anon)/(file)
parts, Unevictable, Shmem, AnonPages (active+inactive anon - shmem), Mapped, Dirty, Writeback: 4 MiB; the uptime
age: 1 s; the cpu row user and system ticks (from cpuacct.usage_all): 10 ticks.
Not compared (semantics differ on purpose): MemAvailable (5.0: free + cache; 6.0/7.0: free + file LRU
[+ slab_reclaimable]); uptime idle and stat idle (derived quantities lxcfs computes in version-specific ways);
host pass-through lines (Mlocked, KernelStack, Commit*, ...), which move with the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from support import pidns
from support.cgv1 import CgroupTree

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

BALLAST_MIB = 64
MEM_TOL_KIB = 4096
UPTIME_TOL_S = 1.0
TICKS_TOL = 10
TOLERANT_MEMINFO = (
    "MemFree",
    "Cached",
    "Active",
    "Inactive",
    "Active(anon)",
    "Inactive(anon)",
    "Active(file)",
    "Inactive(file)",
    "Unevictable",
    "Shmem",
    "AnonPages",
    "Mapped",
    "Dirty",
    "Writeback",
)
FILES = (
    "proc/meminfo",
    "proc/cpuinfo",
    "proc/stat",
    "proc/uptime",
    "proc/swaps",
    "sys/devices/system/cpu/online",
)


@dataclass(frozen=True)
class Pair:
    """path -> (ours, C lxcfs), as read by the same container init."""

    files: dict[str, tuple[str, str]]

    def __getitem__(self, path: str) -> tuple[str, str]:
        return self.files[path]


@pytest.fixture(scope="module")
def pair(cgtree: CgroupTree, ours: Mounted, clxcfs: Mounted) -> Pair:
    cg = cgtree.child("side-by-side", memory_limit=ex.GIB, memsw_limit=ex.GIB + 256 * ex.MIB, cpus="0")
    paths: list[Path] = []
    for f in FILES:
        paths += [ours.mnt / f, clxcfs.mnt / f]
    r = pidns.read_files(paths, cgroups=[cg], ballast_mib=BALLAST_MIB)
    return Pair({f: (r[ours.mnt / f], r[clxcfs.mnt / f]) for f in FILES})


def test_memtotal_and_swaptotal_identical(pair: Pair) -> None:
    ours, theirs = (ex.meminfo(t) for t in pair["proc/meminfo"])
    assert ours["MemTotal"] == theirs["MemTotal"] == 1048576
    assert ours["SwapTotal"] == theirs["SwapTotal"]


def test_ballast_is_visible_in_both(pair: Pair) -> None:
    # The reader's 64 MiB are charged to the cgroup: neither view may claim them as free.
    for mi in (ex.meminfo(t) for t in pair["proc/meminfo"]):
        assert mi["MemFree"] <= mi["MemTotal"] - BALLAST_MIB * 1024


@pytest.mark.parametrize("key", TOLERANT_MEMINFO)
def test_meminfo_figure_close_to_clxcfs(pair: Pair, key: str) -> None:
    ours, theirs = (ex.meminfo(t) for t in pair["proc/meminfo"])
    assert abs(ours[key] - theirs[key]) <= MEM_TOL_KIB, f"{key}: ours {ours[key]} kB, C lxcfs {theirs[key]} kB"


def test_meminfo_same_keys_as_clxcfs(pair: Pair) -> None:
    ours, theirs = (ex.meminfo(t) for t in pair["proc/meminfo"])
    assert list(ours) == list(theirs)


def test_processor_count_identical(pair: Pair) -> None:
    ours, theirs = (ex.cpuinfo_blocks(t) for t in pair["proc/cpuinfo"])
    assert len(ours) == len(theirs) == 1
    assert [b["processor"] for b in ours] == [b["processor"] for b in theirs]


def test_online_identical(pair: Pair) -> None:
    ours, theirs = pair["sys/devices/system/cpu/online"]
    assert ours == theirs == "0\n"


def test_stat_rows_match(pair: Pair) -> None:
    ours, theirs = (ex.stat_cpus(t) for t in pair["proc/stat"])
    assert [r.label for r in ours] == [r.label for r in theirs]
    for o, t in zip(ours, theirs, strict=True):
        user_sys_o, user_sys_t = (o.cols[0], o.cols[2]), (t.cols[0], t.cols[2])
        assert all(abs(a - b) <= TICKS_TOL for a, b in zip(user_sys_o, user_sys_t, strict=True)), (o, t)


def test_swaps_entries_identical(pair: Pair) -> None:
    ours, theirs = (ex.swaps_entries(t) for t in pair["proc/swaps"])
    assert ours == theirs


def test_uptime_age_close(pair: Pair) -> None:
    (ours, _), (theirs, _) = (ex.uptime(t) for t in pair["proc/uptime"])
    assert abs(ours - theirs) <= UPTIME_TOL_S
