"""Real clients (procps, util-linux) run inside a container-like process with OUR files bind-mounted over /proc.

This is what lxcfs-hook sets up in a real container: PID 1 of a new pid namespace, born in a v1 cgroup with a 1 GiB
limit and cpuset 0, in a private mount namespace where MNT/proc/meminfo & co. cover /proc/meminfo & co. (and
MNT/sys/devices/system/cpu covers the sysfs directory). The tools must parse our files and report the
container's figures. Expected numbers come from the limits set here; host mounts are never touched.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from support import pidns
from support.cgv1 import CgroupTree, V1Cgroup

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]


@pytest.fixture(scope="module")
def box(cgtree: CgroupTree) -> V1Cgroup:
    """1 GiB memory (memsw the same: no swap allowed), cpuset.cpus = 0."""
    return cgtree.child("clients", memory_limit=ex.GIB, memsw_limit=ex.GIB, cpus="0")


def _run(ours: Mounted, box: V1Cgroup, argv: list[str]) -> str:
    # Every file of the registry must exist on our mount, or the bind fails the test; the C lxcfs (harness
    # validation mode) has no proc/partitions, so it is bound with what it has.
    binds = pidns.lxcfs_binds(ours.mnt, required=ours.impl == "pylxcfs")
    return pidns.run(argv, cgroups=[box], binds=binds).stdout


def _row(out: str, label: str) -> list[str]:
    for line in out.splitlines():
        if line.startswith(label):
            return line.split()[1:]
    raise AssertionError(f"no {label!r} row in:\n{out}")


def test_free_shows_the_limit(ours: Mounted, box: V1Cgroup) -> None:
    out = _run(ours, box, ["free", "-b"])
    total, used, free, _shared, _buff, available = (int(x) for x in _row(out, "Mem:"))
    assert total == ex.GIB, out
    assert 0 <= used <= total and 0 < free <= total and 0 < available <= total, out
    assert [int(x) for x in _row(out, "Swap:")] == [0, 0, 0], out  # memsw == memory limit: no swap


def test_free_m_total_is_1024(ours: Mounted, box: V1Cgroup) -> None:
    out = _run(ours, box, ["free", "-m"])
    assert int(_row(out, "Mem:")[0]) == 1024, out


def test_top_header_and_cpu_count(ours: Mounted, box: V1Cgroup) -> None:
    # -1: one "%CpuN" summary per CPU (from /proc/stat rows); -w: wide enough that no CPU is cut off.
    out = _run(ours, box, ["top", "-bn1", "-1", "-w", "512"])
    assert re.search(r"MiB Mem :\s+1024\.0 total", out), out
    assert re.findall(r"%Cpu(\d+)\s*:", out) == ["0"], out
    assert re.search(r"load average: ", out), out


def test_vmstat_memory_columns(ours: Mounted, box: V1Cgroup) -> None:
    out = _run(ours, box, ["vmstat"])
    lines = out.splitlines()
    header, values = lines[1].split(), lines[2].split()
    row = dict(zip(header, (int(v) for v in values), strict=False))
    assert row["swpd"] == 0, out
    assert 0 < row["free"] <= ex.GIB // ex.KIB, out
    assert row["free"] + row["buff"] + row["cache"] <= ex.GIB // ex.KIB, out
    assert 0 <= row["id"] <= 100, out


def test_vmstat_s_total_memory(ours: Mounted, box: V1Cgroup) -> None:
    out = _run(ours, box, ["vmstat", "-s"])
    assert re.search(r"^\s*1048576 K total memory$", out, re.M), out
    assert re.search(r"^\s*0 K total swap$", out, re.M), out


def test_uptime_is_the_containers(ours: Mounted, box: V1Cgroup) -> None:
    out = _run(ours, box, ["uptime"])
    assert re.search(r"up\s+0 min", out), out
    # `uptime -s` prints now - uptime: the container was "booted" a moment ago, not when the host was.
    since = dt.datetime.strptime(_run(ours, box, ["uptime", "-s"]).strip(), "%Y-%m-%d %H:%M:%S")
    assert abs((dt.datetime.now() - since).total_seconds()) < 10


def test_lscpu_online_list(ours: Mounted, box: V1Cgroup) -> None:
    out = _run(ours, box, ["lscpu"])
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    assert fields["On-line CPU(s) list"] == "0", out
    if ours.impl == "pylxcfs":
        # "CPU(s):" counts /sys/devices/system/cpu/possible, which is the cpuset here; nothing is off-line.
        # (C lxcfs 5.0 passes possible through: it shows the host's count and the other CPUs as off-line.)
        assert fields["CPU(s)"] == "1" and "Off-line CPU(s) list" not in fields, out


def _mount_points(mountinfo: str) -> set[str]:
    return {line.split()[4] for line in mountinfo.splitlines()}


def test_binds_stay_inside_the_namespace(ours: Mounted, box: V1Cgroup) -> None:
    # Harness self-check: the namespace sees our files over /proc, the host's mount table never does.
    targets = set(pidns.lxcfs_binds(ours.mnt, required=ours.impl == "pylxcfs"))
    inside = _mount_points(_run(ours, box, ["cat", "/proc/self/mountinfo"]))
    assert targets <= inside
    assert not targets & _mount_points(ex.host_file("/proc/self/mountinfo"))
    assert not targets & _mount_points(ex.host_file("/proc/1/mountinfo"))


def _mpstat_cpus(out: str) -> list[str]:
    # Rows "<time> <CPU> <%usr> ..." of the first report; "all" is the aggregate.
    cpus: list[str] = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[0] != "Average:" and parts[1] not in ("CPU", "all") and parts[1].isdigit():
            cpus.append(parts[1])
    return cpus


def test_mpstat_lists_one_cpu(ours: Mounted, box: V1Cgroup) -> None:
    # sysstat's mpstat shows one line per cpuN row of /proc/stat (since boot, no interval).
    out = _run(ours, box, ["mpstat", "-P", "ALL"])
    assert _mpstat_cpus(out) == ["0"], out


@pytest.fixture(scope="module")
def box_cpu1(cgtree: CgroupTree) -> V1Cgroup:
    """cpuset.cpus = 1: the container owns only the host's second CPU."""
    return cgtree.child("clients-cpu1", memory_limit=ex.GIB, cpus="1")


def test_tools_agree_on_cpu_numbers_for_cpuset_1(ours: Mounted, box_cpu1: V1Cgroup) -> None:
    # top and mpstat number CPUs from /proc/stat's cpuN rows, lscpu from the online list: whichever numbering the
    # views use, the tools must name the same single CPU (lxcfs 5.0: "1" everywhere; a renumbered view: "0").
    top = re.findall(r"%Cpu(\d+)\s*:", _run(ours, box_cpu1, ["top", "-bn1", "-1", "-w", "512"]))
    mpstat = _mpstat_cpus(_run(ours, box_cpu1, ["mpstat", "-P", "ALL"]))
    lscpu_out = _run(ours, box_cpu1, ["lscpu"])
    fields = (ln.partition(":") for ln in lscpu_out.splitlines())
    online = [v.strip() for k, _, v in fields if k == "On-line CPU(s) list"]
    assert len(top) == 1 and top == mpstat == online, {"top": top, "mpstat": mpstat, "lscpu on-line": online}
