"""Helpers for the cpu tests: fixture hosts under tests/fixtures/cpu/<id>/ and hand-built contexts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylxcfs.context import CgroupDir, ContainerContext, ViewEnv, ViewOptions
from pylxcfs.hostfs import HostRoot

TESTS = Path(__file__).resolve().parents[1]
FIXTURES = TESTS / "fixtures"
CPU_HOSTS = FIXTURES / "cpu"
CPUINFO = FIXTURES / "cpuinfo"
GOLDEN = TESTS / "golden" / "cpu"
UPDATE_GOLDEN = os.environ.get("PYLXCFS_UPDATE_GOLDEN") == "1"


def root_of(host: str) -> HostRoot:
    """HostRoot over a fixture tree."""
    return HostRoot.from_dir(CPU_HOSTS / host)


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


def check_golden(name: str, text: str) -> None:
    """Compare with tests/golden/cpu/<name>; PYLXCFS_UPDATE_GOLDEN=1 rewrites it (review the diff!)."""
    path = GOLDEN / name
    if UPDATE_GOLDEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if not path.exists():
        pytest.fail(f"missing golden {path}; run with PYLXCFS_UPDATE_GOLDEN=1 and review it")
    assert text == path.read_text()
