"""Our daemon on a real pure cgroup-v2 kernel (runs inside the QEMU guest; see ../conftest.py).

Each view is read by PID 1 of a new pid namespace born in a cgroup with memory.max 256M, memory.swap.max 32M,
cpuset.cpus 0 and cpu.max "50000 100000" (inside a parent with 512M and 64M); a second container sits in a sibling
whose own limits are looser than the parent's. The expected values come from those limits and from the kernel's
cgroup files (cpu.stat, io.stat) read around the view, never from our own output.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from .conftest import (
    CGROUP_ROOT,
    IO_DISK,
    MEMORY_MAX,
    PARENT_MEMORY_MAX,
    PARENT_SWAP_MAX,
    READ_BYTES,
    SWAP_MAX,
    WRITE_BYTES,
    ContainerRun,
    Daemon,
)

pytestmark = pytest.mark.v2guest

REPO = Path(__file__).resolve().parents[3]
USER_HZ = 100  # /proc/stat counts in USER_HZ ticks (always 100 on Linux, whatever CONFIG_HZ is)


def _kv(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _kib(meminfo: dict[str, str], key: str) -> int:
    assert key in meminfo, f"{key} missing from meminfo"
    value, unit = meminfo[key].split()
    assert unit == "kB"
    return int(value)


def _flat(text: str) -> dict[str, int]:
    """cpu.stat style: "key value" lines."""
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


def _io_stat(text: str) -> dict[str, dict[str, int]]:
    """io.stat: "MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=.." per device."""
    out = {}
    for line in text.splitlines():
        dev, *pairs = line.split()
        out[dev] = {k: int(v) for k, v in (p.split("=") for p in pairs)}
    return out


# ---------------------------------------------------------------------------------------------- the guest


def test_guest_is_pure_cgroup_v2() -> None:
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    assert not [m for m in mounts if m[2] == "cgroup"], "a cgroup v1 hierarchy is mounted"
    assert any(m[1] == str(CGROUP_ROOT) and m[2] == "cgroup2" for m in mounts)
    # /proc/cgroups: column 2 is the v1 hierarchy id, 0 for a controller that is on cgroup2 (or unused).
    rows = [line.split() for line in Path("/proc/cgroups").read_text().splitlines()[1:]]
    assert rows and all(r[1] == "0" for r in rows), rows
    assert {"memory", "cpu", "cpuset", "io"} <= set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    assert os.cpu_count() == 2, "the runner gives the guest 2 vCPUs, so a 1-CPU cpuset is a real restriction"


def test_venv_python_runs_the_repository_package() -> None:
    import pylxcfs

    assert Path(sys.prefix) == REPO / ".venv"
    assert Path(pylxcfs.__file__).resolve().is_relative_to(REPO / "src")


def test_daemon_mounted_as_fuse_lxcfs(daemon: Daemon) -> None:
    fields = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    mine = [f for f in fields if f[1] == str(daemon.mnt)]
    assert mine and mine[0][0] == "lxcfs" and mine[0][2] == "fuse.lxcfs", mine


def test_container_init_is_in_the_limited_cgroup(container: ContainerRun) -> None:
    assert container["pid1_cgroup"].strip() == f"0::/{container.cgroup.relative_to(CGROUP_ROOT)}"
    # The busy loop ran into cpu.max: the limits we set are really in force on this kernel.
    assert _flat(container["cpu.stat.before"])["nr_throttled"] > 0


# ----------------------------------------------------------------------------------------------- the views


def test_meminfo_memtotal_is_memory_max(container: ContainerRun) -> None:
    meminfo = _kv(container["meminfo"])
    total = _kib(meminfo, "MemTotal")
    assert total == MEMORY_MAX // 1024
    assert 0 <= _kib(meminfo, "MemFree") <= total
    assert 0 <= _kib(meminfo, "MemAvailable") <= total
    # The swap device is 128 MiB, the parent allows 64 MiB, the container's own limit is 32 MiB.
    assert _kib(meminfo, "SwapTotal") == SWAP_MAX // 1024
    assert 0 <= _kib(meminfo, "SwapFree") <= SWAP_MAX // 1024


def test_cpuinfo_shows_only_the_cpuset(container: ContainerRun) -> None:
    processors = re.findall(r"^processor\s*:\s*(\d+)\s*$", container["cpuinfo"], re.MULTILINE)
    assert processors == ["0"]


def test_online_is_the_cpuset(container: ContainerRun) -> None:
    assert container["online"].strip() == "0"


def test_stat_rows_and_times_come_from_cpuset_and_cpu_stat(container: ContainerRun) -> None:
    rows = {
        f[0]: [int(x) for x in f[1:]]
        for f in (line.split() for line in container["stat"].splitlines())
        if f and f[0].startswith("cpu")
    }
    assert sorted(rows) == ["cpu", "cpu0"], "one cpuN row per CPU of the cpuset"
    before, after = _flat(container["cpu.stat.before"]), _flat(container["cpu.stat.after"])
    user, system = rows["cpu"][0], rows["cpu"][2]
    # The daemon read cpu.stat between our two reads; usec -> USER_HZ ticks truncates (allow one tick).
    lo_user, hi_user = before["user_usec"] * USER_HZ // 10**6, after["user_usec"] * USER_HZ // 10**6
    lo_sys, hi_sys = before["system_usec"] * USER_HZ // 10**6, after["system_usec"] * USER_HZ // 10**6
    assert lo_user - 1 <= user <= hi_user + 1, (user, lo_user, hi_user)
    assert lo_sys - 1 <= system <= hi_sys + 1, (system, lo_sys, hi_sys)
    assert before["usage_usec"] >= 100_000, "the container's busy loop should have used at least 0.1 s of CPU"
    # With a one-CPU cpuset, that CPU's row is the whole.
    assert rows["cpu0"][:3] == rows["cpu"][:3]


def test_swaps_from_memory_swap_max(container: ContainerRun) -> None:
    lines = [line.split() for line in container["swaps"].splitlines()]
    assert lines and lines[0][0] == "Filename"
    entries = lines[1:]
    assert len(entries) == 1, entries
    size_kib, used_kib = int(entries[0][2]), int(entries[0][3])
    assert size_kib == SWAP_MAX // 1024
    assert 0 <= used_kib <= size_kib


def test_diskstats_from_io_stat(container: ContainerRun) -> None:
    assert container["dev_node"].startswith("b"), "the disk must be a block node in the container's /dev"
    major, minor = (int(x) for x in Path(f"/sys/block/{IO_DISK}/dev").read_text().split(":"))
    before, after = _io_stat(container["io.stat.before"]), _io_stat(container["io.stat.after"])
    key = f"{major}:{minor}"
    assert key in before, f"io.stat has no {key}: {before}"
    # Nothing in the container did block I/O between the two io.stat reads, so the daemon saw these numbers.
    assert before[key] == after[key]
    io = before[key]
    assert io["rbytes"] >= READ_BYTES and io["wbytes"] >= WRITE_BYTES, io

    rows = {}
    for line in container["diskstats"].splitlines():
        f = line.split()
        rows[f[2]] = (int(f[0]), int(f[1]), [int(x) for x in f[3:]])
    assert IO_DISK in rows, f"no {IO_DISK} line in diskstats:\n{container['diskstats']}"
    maj, mnr, c = rows[IO_DISK]
    assert (maj, mnr) == (major, minor)
    # Documentation/admin-guide/iostats.rst: reads completed, reads merged, sectors read, ms reading, writes
    # completed, writes merged, sectors written, ... (sectors are 512 bytes whatever the device's block size).
    assert c[0] == io["rios"]
    assert c[2] == io["rbytes"] // 512
    assert c[4] == io["wios"]
    assert c[6] == io["wbytes"] // 512
    # Exactly the container's disks: the whole disks with a block node in its /dev (the guest's devtmpfs, shared
    # with the container; its root is an overlay over 9p, so there is no sda), idle or not. A disk without I/O
    # charged to the cgroup is listed with zero counters, never the host's.
    host_disks = {ln.split()[2] for ln in Path("/proc/diskstats").read_text().splitlines()}
    nodes = {p.name for p in Path("/dev").iterdir()
             if p.is_block_device() and (Path("/sys/block") / p.name).exists() and p.name in host_disks}
    assert set(rows) == nodes, f"diskstats lists {sorted(rows)}, the container's /dev has the disks {sorted(nodes)}"
    for name, (maj, mnr, counters) in rows.items():
        if f"{maj}:{mnr}" not in before:
            assert not any(counters), f"{name} has no I/O in this cgroup yet shows {counters}"


def test_uptime_is_the_container_age(container: ContainerRun) -> None:
    age, idle = (float(x) for x in container["uptime"].split())
    # The init was started less than the whole container run ago (plus a clock tick of start-time granularity
    # and the two-decimal rounding).
    assert 0 <= age <= container.wall_seconds + 0.02
    assert 0 <= idle <= age + 0.02


def test_nested_container_gets_the_parents_smaller_limits(nested_container: ContainerRun) -> None:
    assert nested_container["pid1_cgroup"].strip() == f"0::/{nested_container.cgroup.relative_to(CGROUP_ROOT)}"
    # Own memory.max 1G and memory.swap.max "max"; the parent's 512M and 64M are the limits that apply.
    meminfo = _kv(nested_container["meminfo"])
    assert _kib(meminfo, "MemTotal") == PARENT_MEMORY_MAX // 1024
    assert _kib(meminfo, "SwapTotal") == PARENT_SWAP_MAX // 1024
    entries = [line.split() for line in nested_container["swaps"].splitlines()[1:]]
    assert len(entries) == 1 and int(entries[0][2]) == PARENT_SWAP_MAX // 1024, entries


def _cpu_rows(stat: str) -> list[str]:
    return [line.split()[0] for line in stat.splitlines() if line.startswith("cpu")]


def test_enable_cfs_counts_cpus_from_cpu_max(cfs_container: ContainerRun) -> None:
    c = cfs_container
    assert c["pid1_cgroup"].strip() == f"0::/{c.cgroup.relative_to(CGROUP_ROOT)}"
    # cpuset 0-1: without --enable-cfs the container sees both CPUs ...
    assert re.findall(r"^processor\s*:\s*(\d+)\s*$", c["cpuinfo"], re.MULTILINE) == ["0", "1"]
    assert c["online"].strip() == "0-1"
    assert _cpu_rows(c["stat"]) == ["cpu", "cpu0", "cpu1"]
    # ... with it, cpu.max "50000 100000" (half a CPU) rounds up to one CPU, numbered from 0.
    assert re.findall(r"^processor\s*:\s*(\d+)\s*$", c["cfs.cpuinfo"], re.MULTILINE) == ["0"]
    assert c["cfs.online"].strip() == "0"
    assert _cpu_rows(c["cfs.stat"]) == ["cpu", "cpu0"]


def _psi_totals(text: str) -> dict[str, int]:
    """PSI lines (psi.rst: "some|full avg10=.. avg60=.. avg300=.. total=N") -> {kind: total usec}."""
    out = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(some|full) avg10=\d+\.\d\d avg60=\d+\.\d\d avg300=\d+\.\d\d total=(\d+)", line)
        assert m, f"not a PSI line: {line!r}"
        out[m.group(1)] = int(m.group(2))
    return out


@pytest.mark.parametrize("resource", ["cpu", "memory", "io"])
def test_pressure_is_the_groups(container: ContainerRun, resource: str) -> None:
    # The container's {cpu,memory,io}.pressure read just before and after our /proc/pressure/<resource>: PSI
    # totals only grow, so ours lie between them; the host's system-wide file would not (checked for cpu).
    before = _psi_totals(container[f"{resource}.pressure.before"])
    after = _psi_totals(container[f"{resource}.pressure.after"])
    mine = _psi_totals(container[f"pressure_{resource}"])
    assert set(mine) == set(before) == {"some", "full"}  # 6.1: cpu has a "full" line too (since 5.13)
    for kind in mine:
        assert before[kind] <= mine[kind] <= after[kind], (resource, kind, before, mine, after)
    if resource == "cpu":
        host = _psi_totals(Path("/proc/pressure/cpu").read_text())
        assert host["some"] > after["some"], "the host's cpu pressure must be distinguishable from the group's"


def _io_kib(text: str) -> tuple[int, int]:
    devs = _io_stat(text)
    return (sum(d.get("rbytes", 0) for d in devs.values()) // 1024,
            sum(d.get("wbytes", 0) for d in devs.values()) // 1024)


def test_vmstat_is_the_groups(container: ContainerRun) -> None:
    # The group's memory.stat and io.stat read just before and after our /proc/vmstat: its event counters lie
    # between them (pgpgin/pgpgout in kB of the group's block I/O: the dd reads and writes of the container).
    before, after = _flat(container["memory.stat.before"]), _flat(container["memory.stat.after"])
    mine = _flat(container["vmstat"])
    for key in ("pgfault", "pgmajfault", "workingset_refault_file", "pgactivate", "pgrefill"):
        assert before[key] <= mine[key] <= after[key], (key, before[key], mine.get(key), after[key])
    rb, wb = _io_kib(container["vm.io.stat.before"])
    ra, wa = _io_kib(container["vm.io.stat.after"])
    assert rb <= mine["pgpgin"] <= ra and wb <= mine["pgpgout"] <= wa, (rb, wb, mine, ra, wa)
    assert mine["pgpgin"] >= READ_BYTES // 1024 and mine["pgpgout"] >= WRITE_BYTES // 1024
    page = os.sysconf("SC_PAGE_SIZE")
    assert before["anon"] // page - 4096 <= mine["nr_anon_pages"] <= after["anon"] // page + 4096
    host = _flat(Path("/proc/vmstat").read_text())
    assert mine["pgfault"] < host["pgfault"]
    if "pswpin" in before:  # newer kernels keep swap events per cgroup: si/so are the container's
        assert before["pswpin"] <= mine["pswpin"] <= after["pswpin"]
    elif host["pswpin"] == 0:
        assert mine["pswpin"] == 0
    assert "numa_hit" not in mine or host["numa_hit"] == 0
