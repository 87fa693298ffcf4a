"""views/sys_cpu_online.py over the fixture hosts: always 0..n-1 (renumbered like cpuinfo and stat rows)."""

from __future__ import annotations

import pytest

from pylxcfs.errors import CgroupUnavailable
from pylxcfs.views import sys_cpu_online

from .conftest import env_of, v1_ctx, v2_ctx


@pytest.mark.parametrize(("cpuset", "cpu", "cfs", "want"), [
    ("ct", "ct", False, "0\n"),  # cpuset 1 -> one CPU, numbered 0 like cpuinfo's processor 0 and stat's cpu0
    ("ct", "ct", True, "0\n"),
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
    assert sys_cpu_online.produce(env, v2_ctx(env.root, "ct")) == "0-2\n"  # cpuset 0,2-3: three CPUs
    env = env_of("arm64-unified", enable_cfs=True)
    assert sys_cpu_online.produce(env, v2_ctx(env.root, "ct")) == "0-1\n"


def test_no_cpuset_raises_for_host_fallback() -> None:
    env = env_of("x86_64-hybrid-debian12")
    with pytest.raises(CgroupUnavailable):
        sys_cpu_online.produce(env, v1_ctx(env.root, cpuset=None, cpu="ct", cpuacct=None))
