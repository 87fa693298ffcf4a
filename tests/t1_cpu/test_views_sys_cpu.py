"""views/sys_cpu.py over the fixture hosts: the container's CPUs by HOST id in online/possible/present, an empty
offline list, and only the container's cpuN entries. Expected values come from the fixtures' cpusets and quotas
(written next to each case), not from our output."""

from __future__ import annotations

import pytest

from pylxcfs.errors import CgroupUnavailable
from pylxcfs.views import sys_cpu
from support.hosts import golden_path

from .conftest import X86_CPU, env_of, v1_ctx, v2_ctx

HOST_NAMES = ["cpu0", "cpu1", "cpu2", "cpu3", "cpufreq", "cpuidle", "kernel_max", "online", "cpu", "cpu01", "cpux"]


@pytest.mark.parametrize(("cpuset", "cpu", "cfs", "want"), [
    ("ct", "ct", False, "1\n"),  # cpuset 1 -> host CPU 1, what sched_setaffinity accepts
    ("ct", "ct", True, "1\n"),  # quota ceil(1.5) = 2 >= one CPU
    ("wide", "a/b", False, "0-1\n"),  # empty cpuset -> parent's 0-1
    ("wide", "a/b", True, "0-1\n"),  # ceil(1.5) = 2
    ("wide", "a/tight", True, "0\n"),  # min(1.5, 0.5) -> 1: the first CPU of the cpuset
    ("wide", None, True, "0-1\n"),  # no cpu cgroup: no cap
])
def test_v1_lists(cpuset: str, cpu: str | None, cfs: bool, want: str) -> None:
    env = env_of(X86_CPU, enable_cfs=cfs)
    ctx = v1_ctx(env.root, cpuset=cpuset, cpu=cpu, cpuacct=None)
    for which in ("online", "possible", "present"):
        assert sys_cpu.produce_list(env, ctx, which) == want
    assert sys_cpu.produce_list(env, ctx, "offline") == "\n"  # what the kernel prints for an empty list


@pytest.mark.parametrize(("host", "want"), [(X86_CPU, "1\n"), ("arm64-unified", "0,2-3\n")])
def test_registry_goldens_are_the_cpusets(host: str, want: str) -> None:
    # The registry goldens of each host's container (in cgroup ct: cpuset 1, and 0,2-3; no --enable-cfs there).
    for which in ("online", "possible", "present"):
        assert golden_path(host, f"sys/devices/system/cpu/{which}").read_text() == want
    assert golden_path(host, "sys/devices/system/cpu/offline").read_text() == "\n"


def test_v1_hidden_entries_are_the_other_cpus() -> None:
    env = env_of(X86_CPU)
    ctx = v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct=None)  # cpuset 1
    # cpu0, cpu2, cpu3 are other CPUs; "cpu", "cpu01" (not a kernel name) and "cpux" are no CPU directories
    assert sys_cpu.hidden_entries(env, ctx, HOST_NAMES) == {"cpu0", "cpu2", "cpu3"}


def test_v2_holes_and_cap() -> None:
    env = env_of("arm64-unified")
    ctx = v2_ctx(env.root, "ct")
    assert sys_cpu.produce_list(env, ctx, "online") == "0,2-3\n"  # cpuset 0,2-3 as the kernel prints it
    assert sys_cpu.hidden_entries(env, ctx, HOST_NAMES) == {"cpu1"}
    env = env_of("arm64-unified", enable_cfs=True)
    ctx = v2_ctx(env.root, "ct")
    assert sys_cpu.produce_list(env, ctx, "possible") == "0,2\n"  # ceil(150000/100000) = 2: first two of 0,2,3
    assert sys_cpu.hidden_entries(env, ctx, HOST_NAMES) == {"cpu1", "cpu3"}


def test_no_cpuset_raises_for_host_fallback() -> None:
    env = env_of(X86_CPU)
    with pytest.raises(CgroupUnavailable):
        sys_cpu.produce_list(env, v1_ctx(env.root, cpuset=None, cpu="ct", cpuacct=None), "online")


def test_unknown_list_name_is_an_error() -> None:
    with pytest.raises(ValueError):
        sys_cpu.render_list("isolated", [1])
