"""views/sys_cpu_online.py over the fixture hosts: physical list by default, 0..n-1 with --enable-cfs."""

from __future__ import annotations

import pytest

from pylxcfs.errors import CgroupUnavailable
from pylxcfs.views import sys_cpu_online

from .conftest import env_of, v1_ctx, v2_ctx


@pytest.mark.parametrize(("cpuset", "cpu", "cfs", "want"), [
    ("ct", "ct", False, "1\n"),  # cpuset 1, not renumbered (lxcfs non-view; matches sched_getaffinity)
    ("ct", "ct", True, "0\n"),  # view mode renumbers
    ("wide", "a/b", False, "0-1\n"),  # empty cpuset -> parent's 0-1
    ("wide", "a/b", True, "0-1\n"),  # ceil(1.5) = 2
    ("wide", "a/tight", True, "0\n"),  # min(1.5, 0.5) -> 1
    ("wide", None, True, "0-1\n"),  # no cpu cgroup: no cap
])
def test_v1(cpuset: str, cpu: str | None, cfs: bool, want: str) -> None:
    env = env_of("x86_64-hybrid-debian12", enable_cfs=cfs)
    assert sys_cpu_online.produce(env, v1_ctx(env.root, cpuset=cpuset, cpu=cpu, cpuacct=None)) == want


def test_v2_holes_and_cap() -> None:
    env = env_of("arm64-unified")
    assert sys_cpu_online.produce(env, v2_ctx(env.root, "ct")) == "0,2-3\n"
    env = env_of("arm64-unified", enable_cfs=True)
    assert sys_cpu_online.produce(env, v2_ctx(env.root, "ct")) == "0-1\n"


def test_no_cpuset_raises_for_host_fallback() -> None:
    env = env_of("x86_64-hybrid-debian12")
    with pytest.raises(CgroupUnavailable):
        sys_cpu_online.produce(env, v1_ctx(env.root, cpuset=None, cpu="ct", cpuacct=None))
