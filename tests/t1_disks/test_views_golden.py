"""views/diskstats.py and views/partitions.py: produce() over each fixture host must equal the hand-derived
golden files (tests/golden/<host>/{diskstats,partitions}.txt), plus the pure render rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pylxcfs.cgroups.blkio import IoCounters
from pylxcfs.context import ViewEnv, ViewOptions
from pylxcfs.devnames import ContainerDevices
from pylxcfs.parse.diskstats import DiskstatsLine
from pylxcfs.views import diskstats, partitions
from pylxcfs.views.diskstats import counter_fields, diskstats_names, render_diskstats
from support.hosts import manifest

from .conftest import FIXTURES, GOLDEN, HOSTS, fixture_ctx, fixture_root


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_diskstats_golden(host: str) -> None:
    env = ViewEnv(root=fixture_root(host), opts=ViewOptions())
    assert diskstats.produce(env, fixture_ctx(host)) == (GOLDEN / host / "diskstats.txt").read_text()


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_partitions_golden(host: str) -> None:
    env = ViewEnv(root=fixture_root(host), opts=ViewOptions())
    assert partitions.produce(env, fixture_ctx(host)) == (GOLDEN / host / "partitions.txt").read_text()


def test_diskstats_without_blkio_cgroup_raises() -> None:
    import dataclasses

    ctx = dataclasses.replace(fixture_ctx("x86_64-legacy-centos7-disks"), blkio=None)
    with pytest.raises(Exception, match="blkio"):
        diskstats.produce(ViewEnv(root=fixture_root("x86_64-legacy-centos7-disks"), opts=ViewOptions()), ctx)


C = IoCounters(reads=1, read_merged=2, read_bytes=1536, read_time_ns=3_999_999, writes=4, write_merged=5,
               write_bytes=1023, write_time_ns=6_000_000, discards=7, discard_merged=8, discard_bytes=4096,
               discard_time_ns=9_000_001, io_time_ns=10_500_000)


def test_counter_fields_every_width() -> None:
    # weighted = (3999999 + 6000000 + 9000001) ns = 19 ms; the per-op ms truncate separately (3 + 6 + 9 = 18).
    full = (1, 2, 3, 3, 4, 5, 1, 6, 0, 10, 19, 7, 8, 8, 9, 0, 0)
    assert counter_fields(C, 17) == full
    assert counter_fields(C, 15) == full[:15]
    assert counter_fields(C, 11) == full[:11]
    assert counter_fields(C, 4) == (1, 3, 4, 1)
    assert counter_fields(C, 19) == (*full, 0, 0)


def test_render_keeps_host_order_drops_unnamed_and_lists_idle_disks() -> None:
    host = [DiskstatsLine(8, 16, "sdb", (0,) * 11), DiskstatsLine(8, 0, "sda", (0,) * 11),
            DiskstatsLine(8, 32, "sdc", (0,) * 11), DiskstatsLine(8, 48, "sdd", (5,) * 11)]
    text = render_diskstats(host, {(8, 0): C, (8, 16): C, (8, 48): C}, {(8, 0): "sda", (8, 32): "xvdc", (8, 16): "b"})
    # Host order; 8:48 has counters but no name in the container: left out. 8:32 is named but the cgroup has
    # no statistics for it (no I/O yet): listed, all zeros (not the host's counters).
    assert [ln.split()[2] for ln in text.splitlines()] == ["b", "sda", "xvdc"]
    assert text.splitlines()[1] == "   8       0 sda 1 2 3 3 4 5 1 6 0 10 19"
    assert text.splitlines()[2] == "   8      32 xvdc" + " 0" * 11


def test_partition_nodes_are_not_diskstats_rows() -> None:
    devs = ContainerDevices(nodes={(8, 0): "xvda", (8, 1): "xvda1"}, root_dev=None, root_disk=None,
                            partitions=frozenset({(8, 1)}))
    assert diskstats_names(devs) == {(8, 0): "xvda"}
    assert partitions.partitions_names(devs) == {(8, 0): "xvda", (8, 1): "xvda1"}


def test_zero_counters_still_listed() -> None:
    text = render_diskstats([DiskstatsLine(7, 0, "loop0", (0,) * 17)], {(7, 0): IoCounters()}, {(7, 0): "xvdb"})
    assert text == "   7       0 xvdb" + " 0" * 17 + "\n"


def test_root_disk_named_sda_even_with_its_own_node() -> None:
    devs = ContainerDevices(nodes={(254, 0): "vda", (7, 0): "xvdb"}, root_dev=(254, 2), root_disk=(254, 0))
    assert diskstats_names(devs) == {(254, 0): "sda", (7, 0): "xvdb"}
    assert partitions.partitions_names(devs) == {(254, 0): "vda", (254, 2): "sda", (7, 0): "xvdb"}


CALLERS = {h: manifest(h)["container_caller_pid"] for h in HOSTS}  # 4243, 31338, 778


@pytest.mark.parametrize("host", sorted(HOSTS))
def test_through_renderer_and_resolver(host: str) -> None:
    # The production path: core's Resolver finds the caller's init and its blkio/io cgroup from the tree's
    # /proc/<pid>/{status,cgroup} and self/mountinfo, then the Renderer calls our produce().
    from pylxcfs.service import Renderer

    root = fixture_root(host)
    r = Renderer(root, ViewOptions())
    try:
        for view in ("diskstats", "partitions"):
            got = r.render(f"proc/{view}", CALLERS[host]).decode()
            assert got == (GOLDEN / host / f"{view}.txt").read_text(), view
            # A host caller (single-level NSpid) reads the host's own file.
            assert r.render(f"proc/{view}", 100) == r.host_bytes(f"proc/{view}")
        assert not r.fallbacks
    finally:
        r.close()


def test_renderer_falls_back_to_host_file_without_statistics(tmp_path: Path) -> None:
    # A v1 blkio cgroup with no statistics files at all (no cfq, bfq or throttle): produce() raises
    # CgroupUnavailable and the Renderer serves the host's /proc/diskstats unchanged (LXCFS behaviour).
    from pylxcfs.hostfs import HostRoot
    from pylxcfs.service import Renderer

    host = "x86_64-legacy-centos7-disks"
    tree = tmp_path / host
    shutil.copytree(FIXTURES / host, tree, symlinks=True)
    for f in (tree / "sys/fs/cgroup/blkio/docker/ct1").iterdir():
        f.unlink()
    r = Renderer(HostRoot.from_dir(tree), ViewOptions())
    try:
        assert r.render("proc/diskstats", CALLERS[host]) == (tree / "proc/diskstats").read_bytes()
        assert r.fallbacks  # counted, with its reason
        # partitions needs no cgroup: still the container's view.
        assert r.render("proc/partitions", CALLERS[host]).decode() == (GOLDEN / host / "partitions.txt").read_text()
    finally:
        r.close()
