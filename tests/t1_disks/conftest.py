"""Helpers for the disks tests: the disk fixture hosts of tests/support/hosts.py and their contexts."""

from __future__ import annotations

from pylxcfs.context import CgroupDir, ContainerContext
from pylxcfs.hostfs import HostRoot
from support.hosts import GOLDEN, host_root
from support.hosts import HOSTS as FIXTURES

# Trees: tests/fixtures/hosts/<host>/; goldens: tests/golden/<host>/{diskstats,partitions}.txt.
__all__ = ["FIXTURES", "GOLDEN", "HOSTS", "fixture_ctx", "fixture_root"]

# host id -> (container init pid, blkio/io cgroup relative to the cgroup root, v2)
HOSTS: dict[str, tuple[int, str, bool]] = {
    "x86_64-legacy-centos7-disks": (4242, "blkio/docker/ct1", False),
    "x86_64-hybrid-debian12-disks": (31337, "blkio/pylxcfs/ct", False),
    "x86_64-unified-ubuntu20": (777, "system.slice/docker-abc.scope", True),
}


def fixture_root(host: str) -> HostRoot:
    """HostRoot over a fixture tree."""
    return host_root(host)


def fixture_ctx(host: str) -> ContainerContext:
    """The fixture's container context, as the resolver would build it."""
    pid, rel, v2 = HOSTS[host]
    root = fixture_root(host)
    mount_root = root.cgroup if v2 else root.cgroup_path(rel.split("/")[0])
    blkio = CgroupDir(path=root.cgroup_path(rel), v2=v2, mount_root=mount_root)
    return ContainerContext(caller_pid=pid, init_pid=pid, init_start_ticks=1000, memory=None, cpu=None,
                            cpuacct=None, cpuset=None, blkio=blkio)
