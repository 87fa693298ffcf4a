"""/proc/loadavg: the host file without -l; a per-container load average with -l (virtual-files.md §6.8).

With -l lxcfs keeps, per container cgroup, a kernel-style EWMA of its runnable tasks sampled every 5 s by a
background thread; the first read only registers the cgroup. The busy test runs one spinning task in a fresh
container for ~11 s: the 1-minute average must leave 0.00 while the container shows only its own few tasks, which
a host file (hundreds of tasks here) cannot.
"""

from __future__ import annotations

import pytest

from support import pidns
from support.cgv1 import CgroupTree

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

ATTEMPTS = 5


def _host_loads() -> tuple[float, float, float]:
    la = ex.loadavg(ex.host_file("/proc/loadavg"))
    return la[0], la[1], la[2]


def test_without_l_container_reads_the_host_loadavg(cgtree: CgroupTree, ours: Mounted) -> None:
    cg = cgtree.child("loadavg-host")
    for _ in range(ATTEMPTS):
        before = _host_loads()
        seen = pidns.read_files([ours.mnt / "proc/loadavg"], cgroups=[cg])[ours.mnt / "proc/loadavg"]
        after = _host_loads()
        if before == after:  # the kernel recomputes every 5 s; retry if that happened mid-read
            assert ex.loadavg(seen)[:3] == before
            return
    pytest.fail("host load average kept changing during the reads")


def test_without_l_host_reader_reads_the_host_loadavg(ours: Mounted) -> None:
    for _ in range(ATTEMPTS):
        before = _host_loads()
        seen = (ours.mnt / "proc/loadavg").read_text()
        after = _host_loads()
        if before == after:
            assert ex.loadavg(seen)[:3] == before
            return
    pytest.fail("host load average kept changing during the reads")


def test_with_l_first_read_parses(cgtree: CgroupTree, ours_loadavg: Mounted) -> None:
    cg = cgtree.child("loadavg-first")
    seen = pidns.read_files([ours_loadavg.mnt / "proc/loadavg"], cgroups=[cg])[ours_loadavg.mnt / "proc/loadavg"]
    l1, l5, l15, running, total, last_pid = ex.loadavg(seen)
    assert 0 <= running <= total
    assert last_pid > 0
    # A fresh, nearly idle cgroup: lxcfs starts every new cgroup at 0.00 and counts only its own tasks.
    assert all(0.0 <= x <= 1.0 for x in (l1, l5, l15)), seen
    host_total = ex.loadavg(ex.host_file("/proc/loadavg"))[4]
    assert total <= 10 < host_total, (seen, host_total)


@pytest.mark.slow
def test_with_l_busy_container_load_rises(cgtree: CgroupTree, ours_loadavg: Mounted) -> None:
    cg = cgtree.child("loadavg-busy")
    f = ours_loadavg.mnt / "proc/loadavg"
    # PID 1 (sh) starts one spinning child, reads once to register the cgroup, waits two sampling periods + slack.
    script = f"while :; do :; done & cat {f}; sleep 11; cat {f}; kill $!"
    out = pidns.run(["/bin/sh", "-c", script], cgroups=[cg], timeout=40).stdout
    first, second = (ex.loadavg(line + "\n") for line in out.splitlines())
    host_total = ex.loadavg(ex.host_file("/proc/loadavg"))[4]
    l1, _l5, _l15, running, total, _pid = second
    assert l1 > 0.0, f"1-min load still 0 after 11 s of one spinning task: {first} -> {second}"
    assert l1 <= 2.0, second  # one runnable task (+ a reader): cannot look like a loaded host
    assert 1 <= running <= total
    # sh + the spinner + cat (+ sleep): a handful of tasks, nothing like the host's count.
    assert total <= 10 < host_total, (second, host_total)
