"""--enable-cfs: the visible CPU count follows the CFS quota, capped by the cpuset (virtual-files.md §6.4, 6.5).

Expected count n = min(ceil(quota / period), |cpuset|), or |cpuset| without a quota; the quota is the smallest
over the cgroup and its ancestors (lxcfs 6.0/7.0; 5.0 looked at the cgroup itself only, so the nested case is a
deliberate difference from the installed C lxcfs). The n CPUs shown are the first n of the cpuset, the same in
every file: cpuinfo `processor` 0..n-1 (renumbered, the product's cpuinfo rule), while online/possible/present,
the cpuN directories and the /proc/stat rows name them by host id (what sched_setaffinity accepts); lxcfs's CPU
view mode renumbers online and the stat rows as well, which breaks `taskset -c $(cat .../online)`.
"""

from __future__ import annotations

import math

import pytest

from support import pidns
from support.cgv1 import CgroupTree, V1Cgroup

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

PERIOD = 100_000


def _host_cpus() -> set[int]:
    return ex.cpulist(ex.host_file("/sys/devices/system/cpu/online"))


def _expected(quota_us: int | None, cpus: set[int]) -> int:
    if quota_us is None or quota_us <= 0:
        return len(cpus)
    return min(math.ceil(quota_us / PERIOD), len(cpus))


def _check_view(ours_cfs: Mounted, cgroups: list[V1Cgroup], cpus: set[int], n: int) -> None:
    m = ours_cfs.mnt
    cpu = m / "sys/devices/system/cpu"
    r = pidns.read_files([m / "proc/cpuinfo", cpu / "online", cpu / "possible", m / "proc/stat"], cgroups=cgroups)
    shown = sorted(cpus & _host_cpus())[:n]
    blocks = ex.cpuinfo_blocks(r[m / "proc/cpuinfo"])
    assert [b["processor"] for b in blocks] == [str(i) for i in range(n)]
    assert ex.cpulist(r[cpu / "online"]) == ex.cpulist(r[cpu / "possible"]) == set(shown)
    assert [row.label for row in ex.stat_cpus(r[m / "proc/stat"])[1:]] == [f"cpu{i}" for i in shown]


@pytest.mark.parametrize(
    ("name", "cpus", "quota_us"),
    [
        ("half-cpu", "all", 50_000),
        ("one-and-half", "all", 150_000),
        ("no-quota", "all", None),
        ("quota-above-cpuset", "0", 150_000),
    ],
)
def test_cfs_cpu_count(cgtree: CgroupTree, ours_cfs: Mounted, name: str, cpus: str, quota_us: int | None) -> None:
    host = _host_cpus()
    cpuset = host if cpus == "all" else ex.cpulist(cpus)
    if len(host) < 2:
        pytest.fail("this test needs a host with at least 2 CPUs (this machine kind has 2)")
    cg = cgtree.child(
        f"cfs-{name}",
        cpus=",".join(str(c) for c in sorted(cpuset)),
        cfs_quota_us=quota_us if quota_us is not None else -1,
        cfs_period_us=PERIOD,
    )
    _check_view(ours_cfs, [cg], cpuset, _expected(quota_us, cpuset))


def test_cfs_parent_quota_limits_child(cgtree: CgroupTree, ours_cfs: Mounted) -> None:
    # The kernel throttles the child by its parent's quota too; the view must not show more CPUs than that.
    cgtree.child("cfs-parent", cfs_quota_us=50_000, cfs_period_us=PERIOD)
    child = cgtree.child("cfs-parent/child", cfs_quota_us=-1)
    _check_view(ours_cfs, [child], _host_cpus(), 1)
