"""Which cgroup answers a reader: the init of the reader's pid namespace, resolved afresh for every container.

virtual-files.md §4.1: a reader gets the view of PID 1 of its pid namespace (that init's cgroups), whatever cgroup
the reader itself sits in; a cgroup path ending in /init.scope is pruned to its parent (systemd-style containers
put their init there while the limit sits on the container's cgroup). Content is rendered at open, so a limit
changed while the container runs shows on the next read, and back-to-back containers never see each other's view
(the init cache is keyed by pid namespace and validated).
"""

from __future__ import annotations

import shlex

import pytest

from support import pidns
from support.cgv1 import CgroupTree

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

MEM = "proc/meminfo"


def _memtotals(out: str) -> list[int]:
    return [int(line.split()[1]) for line in out.splitlines() if line.startswith("MemTotal:")]


def test_reader_in_another_cgroup_gets_the_inits_view(cgtree: CgroupTree, ours: Mounted) -> None:
    init_cg = cgtree.child("res-init", memory_limit=512 * ex.MIB)
    reader_cg = cgtree.child("res-init-reader", memory_limit=256 * ex.MIB)
    procs = shlex.quote(str(reader_cg.dir("memory") / "cgroup.procs"))
    meminfo = shlex.quote(str(ours.mnt / MEM))
    # PID 1 stays in init_cg; a child moves itself to reader_cg (proved by /proc/self/cgroup), then reads.
    inner = f"echo $$ > {procs} && grep ':memory:' /proc/self/cgroup && cat {meminfo}"
    out = pidns.run(["/bin/sh", "-c", f"/bin/sh -c {shlex.quote(inner)}"], cgroups=[init_cg]).stdout
    assert f":memory:{reader_cg.path}" in out, out
    assert _memtotals(out) == [524288], out


def test_init_scope_is_pruned_to_its_parent(cgtree: CgroupTree, ours: Mounted) -> None:
    cgtree.child("res-scoped", memory_limit=512 * ex.MIB)
    scope = cgtree.child("res-scoped/init.scope", memory_limit=128 * ex.MIB)
    r = pidns.read_files([ours.mnt / MEM], cgroups=[scope])
    assert ex.meminfo(r[ours.mnt / MEM])["MemTotal"] == 524288


def test_limit_change_shows_on_next_read(cgtree: CgroupTree, ours: Mounted) -> None:
    cg = cgtree.child("res-update", memory_limit=512 * ex.MIB)
    limit_file = shlex.quote(str(cg.dir("memory") / "memory.limit_in_bytes"))
    meminfo = shlex.quote(str(ours.mnt / MEM))
    script = f"cat {meminfo}; echo {256 * ex.MIB} > {limit_file}; cat {meminfo}"
    out = pidns.run(["/bin/sh", "-c", script], cgroups=[cg]).stdout
    assert _memtotals(out) == [524288, 262144], out


def test_back_to_back_containers_each_see_their_own_limit(cgtree: CgroupTree, ours: Mounted) -> None:
    small = cgtree.child("res-alt-small", memory_limit=256 * ex.MIB)
    big = cgtree.child("res-alt-big", memory_limit=768 * ex.MIB)
    seen = []
    for i in range(8):
        cg = small if i % 2 else big
        r = pidns.read_files([ours.mnt / MEM], cgroups=[cg])
        seen.append(ex.meminfo(r[ours.mnt / MEM])["MemTotal"])
    assert seen == [786432, 262144] * 4
