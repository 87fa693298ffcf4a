"""/proc/pressure/* through the mounted daemon on this real hybrid host (v1 controllers + cgroup2 "unified").

The container is PID 1 of a new pid namespace born in a real v1 memory cgroup AND a real group of the unified
hierarchy (/sys/fs/cgroup/unified/pylxcfs-test-rvpsi-<pid>/ct), with our files bind-mounted over
/proc/pressure/{cpu,memory,io} as the hook binds them. Busy loops in the same group make CPU pressure (3 runnable
tasks on 2 CPUs shared with the rest of the machine). The container reads its group's own <res>.pressure directly
just before and just after the bound /proc/pressure/<res>; PSI totals only grow, so our totals must lie between
the two, while the host's system-wide total (larger, checked) must not. A host caller gets the host file.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import pidns
from support.cgv1 import CgroupTree, V1Cgroup

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

UNIFIED = Path("/sys/fs/cgroup/unified")
RESOURCES = ("cpu", "memory", "io")
_LINE = re.compile(r"^(some|full) avg10=(\d+\.\d\d) avg60=(\d+\.\d\d) avg300=(\d+\.\d\d) total=(\d+)$")


def _psi(text: str) -> dict[str, tuple[float, float, float, int]]:
    """Independent PSI parser (psi.rst format): kind -> (avg10, avg60, avg300, total usec)."""
    out: dict[str, tuple[float, float, float, int]] = {}
    assert text.endswith("\n"), repr(text)
    for line in text.splitlines():
        m = _LINE.match(line)
        assert m, f"not a PSI line: {line!r}"
        out[m.group(1)] = (float(m.group(2)), float(m.group(3)), float(m.group(4)), int(m.group(5)))
    return out


@pytest.fixture(scope="module")
def psi_tree() -> Iterator[CgroupTree]:
    if not (UNIFIED / "cgroup.procs").is_file() or not (UNIFIED / "cpu.pressure").is_file():
        pytest.fail("this hybrid host's cgroup2 mount at /sys/fs/cgroup/unified with PSI is a prerequisite")
    # One test-owned parent in the v1 memory hierarchy and in the unified one (same relative path in both).
    tree = CgroupTree("rvpsi", controllers=("memory", "unified"))
    tree.create()
    yield tree
    tree.destroy()


@pytest.fixture(scope="module")
def busy_ct(psi_tree: CgroupTree) -> Iterator[V1Cgroup]:
    """parent/ct (memory limit 256 MiB) with three busy loops in it, left running while the module reads."""
    ct = psi_tree.child("ct", memory_limit=256 * ex.MIB)
    assert (ct.dir("unified") / "cpu.pressure").is_file()
    procs = [str(p) for p in ct.procs_files()]
    # sh joins the cgroups, then becomes the loop: the same "join before exec" as the container launcher.
    join = " && ".join(f"echo $$ > {p}" for p in procs)
    loops = [subprocess.Popen(["sh", "-c", f"{join} && exec {sys.executable} -S -c 'while True: pass'"])
             for _ in range(3)]
    try:
        # Wait until the group has stalled a measurable time (bounded: fail rather than hang).
        deadline = time.monotonic() + 20
        while _psi((ct.dir("unified") / "cpu.pressure").read_text())["some"][3] < 20_000:
            assert time.monotonic() < deadline, "three busy loops on two CPUs made no CPU pressure in 20 s"
            time.sleep(0.1)
        yield ct
    finally:
        for p in loops:
            p.kill()
            p.wait()


def test_container_reads_its_groups_pressure(ours: Mounted, busy_ct: V1Cgroup) -> None:
    binds = {f"/proc/pressure/{r}": str(ours.mnt / "proc/pressure" / r) for r in RESOURCES}
    grp = busy_ct.dir("unified")
    paths: list[str] = []
    for r in RESOURCES:
        paths += [str(grp / f"{r}.pressure"), f"/proc/pressure/{r}", str(grp / f"{r}.pressure")]
    host_before = {r: _psi(ex.host_file(f"/proc/pressure/{r}")) for r in RESOURCES}
    seen = pidns.read_files(paths, cgroups=[busy_ct], binds=binds)
    assert seen.pid == 1
    for r in RESOURCES:
        before, after = (_psi(t) for t in seen.all(str(grp / f"{r}.pressure")))
        mine = _psi(seen[f"/proc/pressure/{r}"])
        assert set(mine) == set(before), (r, mine, before)  # same lines as the kernel's cgroup file
        for kind in mine:
            assert before[kind][3] <= mine[kind][3] <= after[kind][3], (r, kind, before, mine, after)
        # The system-wide "some" is at least the group's (a stalled group task is a stalled task); here it is
        # far larger, so the bracket above could not be met by the host file.
        if r == "cpu":
            assert host_before["cpu"]["some"][3] > after["some"][3], (host_before["cpu"], after)
            assert mine["some"][3] >= 20_000  # the busy loops' stall, not an idle group's zero


def test_host_caller_gets_the_host_file(ours: Mounted) -> None:
    for r in RESOURCES:
        before = _psi(ex.host_file(f"/proc/pressure/{r}"))
        mine = _psi((ours.mnt / "proc/pressure" / r).read_text())
        after = _psi(ex.host_file(f"/proc/pressure/{r}"))
        assert set(mine) == set(before)
        for kind in mine:
            assert before[kind][3] <= mine[kind][3] <= after[kind][3], (r, kind)


def test_open_file_re_read_stays_the_containers(ours: Mounted, busy_ct: V1Cgroup) -> None:
    # A poller keeps the file open and re-reads from offset 0 (psi monitors, below, node-exporter do this).
    script = (
        "import os,time\n"
        "fd=os.open('/proc/pressure/cpu',os.O_RDONLY)\n"
        "a=os.pread(fd,4096,0); time.sleep(0.5); b=os.pread(fd,4096,0)\n"
        "print(a.decode()+'@@\\n'+b.decode(),end='')\n"
    )
    grp = busy_ct.dir("unified")
    start = _psi((grp / "cpu.pressure").read_text())["some"][3]
    out = pidns.run([sys.executable, "-S", "-c", script], cgroups=[busy_ct],
                    binds={"/proc/pressure/cpu": str(ours.mnt / "proc/pressure/cpu")}).stdout
    end = _psi((grp / "cpu.pressure").read_text())["some"][3]
    first, second = (_psi(part) for part in out.split("@@\n"))
    assert start <= first["some"][3] <= second["some"][3] <= end
