"""cgroups/cpu.py against the fixture trees (the production read path through a HostRoot) and an error
matrix of missing and malformed files built in tmp_path."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from pylxcfs.cgroups.cpu import cfs_cpu_count, cpu_bandwidth, cpu_usage, effective_cpu_limit, visible_cpus
from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable, ParseError

from .conftest import X86_CPU, root_of

X86 = root_of(X86_CPU)
ARM = root_of("arm64-unified")


def v1(ctrl: str, rel: str) -> CgroupDir:
    return CgroupDir(X86.cgroup_path(f"{ctrl}/{rel}".rstrip("/")), False, X86.cgroup_path(ctrl))


def v2(rel: str) -> CgroupDir:
    return CgroupDir(ARM.cgroup_path(rel), True, ARM.cgroup)


def test_v1_visible_cpus() -> None:
    assert visible_cpus(v1("cpuset", "ct")) == {1}


def test_v1_empty_cpuset_walks_up() -> None:
    # cpuset.effective_cpus and cpuset.cpus both empty in "wide": the parent's CPUs apply
    assert visible_cpus(v1("cpuset", "wide")) == {0, 1}


def test_v2_visible_cpus_and_inheritance() -> None:
    assert visible_cpus(v2("ct")) == {0, 2, 3}
    # ct/child has no cpuset.cpus.effective (controller not enabled there): ct's set applies
    assert visible_cpus(v2("ct/child")) == {0, 2, 3}


def test_no_cpuset_file_anywhere_is_none(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert visible_cpus(CgroupDir(str(tmp_path / "a"), True, str(tmp_path))) is None


def test_v1_quota_and_period() -> None:
    bw = cpu_bandwidth(v1("cpu", "ct").path, False)
    assert bw is not None and (bw.quota_usec, bw.period_usec) == (50000, 100000) and bw.cpus == Fraction(1, 2)
    assert cpu_bandwidth(v1("cpu", "").path, False) is None  # -1 at the root


@pytest.mark.parametrize(("rel", "limit", "count"), [
    ("ct", Fraction(1, 2), 1),
    ("a", Fraction(3, 2), 2),
    ("a/b", Fraction(3, 2), 2),  # -1 here, the parent's 1.5 CPUs apply
    ("a/tight", Fraction(1, 2), 1),  # 25000/50000 below the parent's 1.5
    ("", None, None),
])
def test_v1_effective_limit_is_min_over_ancestors(rel: str, limit: Fraction | None, count: int | None) -> None:
    assert effective_cpu_limit(v1("cpu", rel)) == limit
    assert cfs_cpu_count(v1("cpu", rel)) == count


def test_v2_cpu_max() -> None:
    assert effective_cpu_limit(v2("ct")) == Fraction(3, 2)
    assert effective_cpu_limit(v2("ct/child")) == Fraction(3, 2)  # "max 100000" at the child
    assert cfs_cpu_count(v2("ct")) == 2
    assert effective_cpu_limit(CgroupDir(ARM.cgroup, True, ARM.cgroup)) is None  # root has no cpu.max


def test_v1_usage_all() -> None:
    u = cpu_usage(v1("cpuacct", "ct"))
    assert u.per_cpu == {0: (120000000, 30000000), 1: (4567000000, 1230000000)}
    assert (u.user_ns, u.system_ns) == (4687000000, 1260000000)


def test_v1_usage_percpu_split_by_stat_ratio() -> None:
    # usage_percpu 1e9 and 3e9 ns; cpuacct.stat user 300 system 100 -> 3/4 of each CPU's time is user
    u = cpu_usage(v1("cpuacct", "old"))
    assert u.per_cpu == {0: (750000000, 250000000), 1: (2250000000, 750000000)}


def test_v2_usage_totals_only() -> None:
    u = cpu_usage(v2("ct"))
    assert (u.user_ns, u.system_ns, u.per_cpu) == (3010000000, 1990000000, None)


# ------------------------------------------------------------------------------------------ error matrix

def _dir(tmp_path: Path, files: dict[str, str], v2flag: bool) -> CgroupDir:
    d = tmp_path / "cg"
    d.mkdir()
    for name, text in files.items():
        (d / name).write_text(text)
    return CgroupDir(str(d), v2flag, str(d))


@pytest.mark.parametrize(("files", "v2flag"), [
    ({"cpu.max": "abc 100000\n"}, True),
    ({"cpu.max": "max\n"}, True),
    ({"cpu.max": "0 100000\n"}, True),
    ({"cpu.cfs_quota_us": "x\n", "cpu.cfs_period_us": "100000\n"}, False),
    ({"cpu.cfs_quota_us": "1000\n", "cpu.cfs_period_us": "0\n"}, False),
])
def test_bad_bandwidth_raises(tmp_path: Path, files: dict[str, str], v2flag: bool) -> None:
    with pytest.raises(ParseError):
        effective_cpu_limit(_dir(tmp_path, files, v2flag))


def test_missing_bandwidth_files_mean_unlimited(tmp_path: Path) -> None:
    assert effective_cpu_limit(_dir(tmp_path, {}, False)) is None


@pytest.mark.parametrize(("files", "v2flag"), [
    ({"cpuacct.usage_all": "cpu usr sys\n0 1 2\n"}, False),
    ({"cpuacct.usage_all": "cpu user system\n0 1 x\n"}, False),
    ({"cpuacct.usage_all": "cpu user system\n0 1\n"}, False),
    ({"cpuacct.usage_percpu": "1 x\n", "cpuacct.stat": "user 1\nsystem 1\n"}, False),
    ({"cpuacct.usage_percpu": "1 2\n", "cpuacct.stat": "user 1\n"}, False),
    ({"cpu.stat": "usage_usec 1\n"}, True),
    ({"cpu.stat": "usage_usec x\nuser_usec 1\nsystem_usec 1\n"}, True),
])
def test_bad_usage_raises(tmp_path: Path, files: dict[str, str], v2flag: bool) -> None:
    with pytest.raises(ParseError):
        cpu_usage(_dir(tmp_path, files, v2flag))


@pytest.mark.parametrize(("files", "v2flag"), [
    ({}, True),
    ({}, False),
    ({"cpuacct.usage_percpu": "1 2\n"}, False),  # no usage_all and no cpuacct.stat
])
def test_missing_usage_unavailable(tmp_path: Path, files: dict[str, str], v2flag: bool) -> None:
    with pytest.raises(CgroupUnavailable):
        cpu_usage(_dir(tmp_path, files, v2flag))


def test_bad_cpuset_raises_with_path(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match=r"cpuset\.effective_cpus"):
        visible_cpus(_dir(tmp_path, {"cpuset.effective_cpus": "0-\n"}, False))


def test_usage_zero_stat_all_user(tmp_path: Path) -> None:
    u = cpu_usage(_dir(tmp_path, {"cpuacct.usage_percpu": "7 0\n", "cpuacct.stat": "user 0\nsystem 0\n"}, False))
    assert u.per_cpu == {0: (7, 0), 1: (0, 0)}
