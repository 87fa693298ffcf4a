"""Helpers for the cpu tests: the fixture hosts of tests/support/hosts.py and hand-built contexts.

The cpu hosts are x86_64-hybrid-debian12-cpu and arm64-unified (several cgroups each, for hand-built contexts);
other architectures' /proc/cpuinfo samples are the proc/cpuinfo of their hosts (CPUINFO maps a sample name to it)."""

from __future__ import annotations

from pathlib import Path

from pylxcfs.context import CgroupDir, ContainerContext, ViewEnv, ViewOptions
from pylxcfs.hostfs import HostRoot
from support.hosts import HOSTS, check_golden, host_root

__all__ = ["CPUINFO", "CPU_HOSTS", "HOSTS", "X86_CPU", "check_golden", "env_of", "root_of", "v1_ctx", "v2_ctx"]

CPU_HOSTS = HOSTS
X86_CPU = "x86_64-hybrid-debian12-cpu"  # this machine's cpuinfo, synthetic cpu cgroups (its MANIFEST.toml)
# /proc/cpuinfo samples by name -> the host tree holding each (MANIFEST.toml of each says where it comes from).
CPUINFO: dict[str, Path] = {
    name: HOSTS / host / "proc" / "cpuinfo"
    for name, host in {
        "x86_64.txt": X86_CPU, "arm64.txt": "arm64-unified", "arm64-compat32.txt": "arm64-compat32",
        "arm-legacy.txt": "armv7-legacy", "ppc64le.txt": "ppc64le-power9", "s390x.txt": "s390x-z15",
        "s390x-noblocks.txt": "s390x-z15-noblocks",
    }.items()
}


def root_of(host: str) -> HostRoot:
    """HostRoot over a fixture tree."""
    return host_root(host)


def env_of(host: str, *, enable_cfs: bool = False) -> ViewEnv:
    """A fresh ViewEnv (empty view state) over a fixture tree."""
    return ViewEnv(root=root_of(host), opts=ViewOptions(enable_cfs=enable_cfs))


def v1_ctx(root: HostRoot, *, cpuset: str | None, cpu: str | None, cpuacct: str | None,
           start_ticks: int = 123456) -> ContainerContext:
    """A context as the resolver builds it on a v1 host: each controller is its own hierarchy."""

    def d(ctrl: str, rel: str | None) -> CgroupDir | None:
        if rel is None:
            return None
        return CgroupDir(root.cgroup_path(f"{ctrl}/{rel}".rstrip("/")), False, root.cgroup_path(ctrl))

    return ContainerContext(caller_pid=4242, init_pid=4242, init_start_ticks=start_ticks, memory=None,
                            cpu=d("cpu", cpu), cpuacct=d("cpuacct", cpuacct), cpuset=d("cpuset", cpuset),
                            blkio=None)


def v2_ctx(root: HostRoot, rel: str, start_ticks: int = 500) -> ContainerContext:
    """A context on a pure cgroup2 host: every controller points at the same directory."""
    d = CgroupDir(root.cgroup_path(rel), True, root.cgroup)
    return ContainerContext(caller_pid=77, init_pid=77, init_start_ticks=start_ticks, memory=d, cpu=d,
                            cpuacct=d, cpuset=d, blkio=d)
