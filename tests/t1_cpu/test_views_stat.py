"""views/stat.py over the fixture hosts. Expected rows are derived by hand from the fixture files (the
arithmetic is written next to each case), not copied from our output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pylxcfs.context import ViewEnv, ViewOptions
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.hostfs import HostRoot
from pylxcfs.views import stat
from support.hosts import golden_path

from .conftest import CPU_HOSTS, X86_CPU, env_of, v1_ctx, v2_ctx

X86 = X86_CPU
ARM = "arm64-unified"


def host_other(host: str, btime: int) -> list[str]:
    lines = (CPU_HOSTS / host / "proc" / "stat").read_text().splitlines()
    return [f"btime {btime}" if line.startswith("btime") else line for line in lines if not line.startswith("cpu")]


def expect(host: str, rows: list[str], btime: int) -> str:
    cols = [r.split()[1:] for r in rows]
    total = [str(sum(int(c[i]) for c in cols)) for i in range(10)]
    return "\n".join(["cpu  " + " ".join(total), *rows, *host_other(host, btime)]) + "\n"


# btime is the host's line, unchanged, whenever the container's init started (as the C lxcfs keeps it)
X86_BTIME = 1795925148


def test_v1_single_cpu() -> None:
    # cpuset 1; the row keeps the host id (cpu1, as in sysfs).
    # usage_all cpu1: user 4567000000 ns -> 456 ticks, system 1230000000 -> 123.
    # host cpu1 "2000 0 1000 10000 50 0 20 3 0 0": non-idle 3073 >= 579 -> idle 10000 + 3073 - 579 = 12494
    env = env_of(X86)
    out = stat.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct"))
    assert out == expect(X86, ["cpu1 456 0 123 12494 0 0 0 0 0 0"], X86_BTIME)
    # the host's container (MANIFEST: init 4242 in cpuset/cpu/cpuacct ct) renders this through the registry golden
    assert golden_path(X86, "proc/stat").read_text() == out


def test_v1_two_cpus_per_cpu_usage() -> None:
    # cpuset "wide" is empty -> parent's 0-1. cpu0: u 100 s 50, host non-idle 1000+10+500+50+20+3 = 1583,
    # idle 10000 + 1583 - 150 = 11433. cpu1: u 201 s 0, idle 10000 + 3073 - 201 = 12872.
    env = env_of(X86)
    out = stat.produce(env, v1_ctx(env.root, cpuset="wide", cpu="a/b", cpuacct="wide"))
    assert out == expect(X86, ["cpu0 100 0 50 11433 0 0 0 0 0 0", "cpu1 201 0 0 12872 0 0 0 0 0 0"], X86_BTIME)


def test_v1_cfs_cap_folds_usage_into_shown_rows() -> None:
    # --enable-cfs, cpu a/tight: min(1.5, 0.5) -> 1 CPU. U = 100 + 201 = 301, S = 50 on row 0 (host cpu0):
    # idle 10000 + 1583 - 351 = 11232.
    env = env_of(X86, enable_cfs=True)
    out = stat.produce(env, v1_ctx(env.root, cpuset="wide", cpu="a/tight", cpuacct="wide"))
    assert out == expect(X86, ["cpu0 301 0 50 11232 0 0 0 0 0 0"], X86_BTIME)


def test_v1_cfs_cap_above_cpuset_changes_nothing() -> None:
    env = env_of(X86, enable_cfs=True)
    out = stat.produce(env, v1_ctx(env.root, cpuset="wide", cpu="a/b", cpuacct="wide"))  # ceil(1.5) = 2 CPUs
    assert out == expect(X86, ["cpu0 100 0 50 11433 0 0 0 0 0 0", "cpu1 201 0 0 12872 0 0 0 0 0 0"], X86_BTIME)


def test_v1_old_kernel_percpu_split() -> None:
    # cpuacct "old": cpu1 3e9 ns split 3:1 -> user 225, system 75; idle 10000 + 3073 - 300 = 12773
    env = env_of(X86)
    out = stat.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="old"))
    assert out == expect(X86, ["cpu1 225 0 75 12773 0 0 0 0 0 0"], X86_BTIME)


def test_no_cpuacct_shows_host_rows() -> None:
    env = env_of(X86)
    out = stat.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct=None))
    assert out == expect(X86, ["cpu1 2000 0 1000 10000 50 0 20 3 0 0"], X86_BTIME)


def test_v2_even_split() -> None:
    # cpuset 0,2-3; cpu.stat user 3010000 us -> 301 ticks -> 101/100/100; system 199 -> 67/66/66.
    # host cpu0 and cpu2 non-idle 160 < 168 and 166 -> idle stays 10000 (lxcfs rule);
    # cpu3 non-idle 610 >= 166 -> 10000 + 444 = 10444. btime: the host's 1700000000.
    env = env_of(ARM)
    out = stat.produce(env, v2_ctx(env.root, "ct"))
    assert out == expect(ARM, ["cpu0 101 0 67 10000 0 0 0 0 0 0", "cpu2 100 0 66 10000 0 0 0 0 0 0",
                               "cpu3 100 0 66 10444 0 0 0 0 0 0"], 1700000000)
    assert golden_path(ARM, "proc/stat").read_text() == out  # the host's container is in ct


def test_v2_cfs_cap() -> None:
    # ceil(150000/100000) = 2 rows: 301 -> 151/150, 199 -> 100/99 on host cpu0 and cpu2 (idle 10000 each)
    env = env_of(ARM, enable_cfs=True)
    out = stat.produce(env, v2_ctx(env.root, "ct"))
    assert out == expect(ARM, ["cpu0 151 0 100 10000 0 0 0 0 0 0", "cpu2 150 0 99 10000 0 0 0 0 0 0"],
                         1700000000)


def test_no_cpuset_cgroup_raises() -> None:
    env = env_of(X86)
    with pytest.raises(CgroupUnavailable):
        stat.produce(env, v1_ctx(env.root, cpuset=None, cpu="ct", cpuacct="ct"))


# ------------------------------------------------------------------------- monotone across reads

def _copy(tmp_path: Path) -> tuple[Path, ViewEnv]:
    dst = tmp_path / "host"
    shutil.copytree(CPU_HOSTS / X86, dst, symlinks=True)
    return dst, ViewEnv(root=HostRoot.from_dir(dst), opts=ViewOptions())


def _rows(text: str) -> list[list[int]]:
    return [[int(x) for x in line.split()[1:]] for line in text.splitlines() if line.startswith("cpu")]


def _assert_not_below(before: list[list[int]], after: list[list[int]]) -> None:
    for b, a in zip(before, after, strict=False):
        assert all(y >= x for x, y in zip(b, a, strict=True)), (b, a)


def test_usage_drop_never_goes_backwards(tmp_path: Path) -> None:
    # The cgroup is recreated under the same path: its usage restarts near 0. Shown counters must hold.
    dst, env = _copy(tmp_path)
    ctx = v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct")
    first = _rows(stat.produce(env, ctx))
    (dst / "sys/fs/cgroup/cpuacct/ct/cpuacct.usage_all").write_text("cpu user system\n0 0 0\n1 10000000 0\n")
    second = _rows(stat.produce(env, ctx))
    _assert_not_below(first, second)
    # usage then grows by 2 s of user time on cpu1: the shown user grows by exactly 200 ticks
    (dst / "sys/fs/cgroup/cpuacct/ct/cpuacct.usage_all").write_text("cpu user system\n0 0 0\n1 2010000000 0\n")
    third = _rows(stat.produce(env, ctx))
    assert third[1][0] - second[1][0] == 200


def test_cpuset_shrink_folds_rows_and_keeps_total(tmp_path: Path) -> None:
    dst, env = _copy(tmp_path)
    ctx = v1_ctx(env.root, cpuset="wide", cpu="a/b", cpuacct="wide")
    before = _rows(stat.produce(env, ctx))
    assert len(before) == 3  # aggregate + cpu0 + cpu1
    (dst / "sys/fs/cgroup/cpuset/wide/cpuset.effective_cpus").write_text("1\n")
    after = _rows(stat.produce(env, ctx))
    assert len(after) == 2
    _assert_not_below([before[0]], [after[0]])  # aggregate never decreases
    assert after[0] == after[1]  # and is still the sum of the rows


def test_state_is_per_cgroup_and_pruned() -> None:
    env = env_of(X86)
    stat.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct"))
    stat.produce(env, v1_ctx(env.root, cpuset="wide", cpu="a/b", cpuacct="wide"))
    state = env.states["stat"]
    assert isinstance(state, stat.StatState) and len(state.nodes) == 2
    now = max(n.seen for n in state.nodes.values())
    state.last_prune = 0.0
    state.prune(now + stat.PRUNE_AFTER_S + 1)
    assert state.nodes == {}


def test_host_btime_absent_no_rewrite(tmp_path: Path) -> None:
    dst, env = _copy(tmp_path)
    p = dst / "proc/stat"
    p.write_text("".join(line for line in p.read_text().splitlines(True) if not line.startswith("btime")))
    out = stat.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct"))
    assert "btime" not in out


def test_btime_is_the_hosts_whenever_the_init_started() -> None:
    # /proc/<pid>/stat start times count from the host's boot, so ps computes btime + starttime / HZ: btime must be
    # the host's (the fixture's line), not the container's start
    env = env_of(X86)
    for ticks in (0, 1_000_099):
        out = stat.produce(env, v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="ct", start_ticks=ticks))
        assert "\nbtime 1795925148\n" in out


def test_shared_cpuacct_different_cpusets_get_separate_nodes() -> None:
    # two containers in the same cpuacct cgroup but different cpusets: alternating reads must not fold and
    # re-add rows (which would inflate the counters on every read)
    env = env_of(X86)
    a = v1_ctx(env.root, cpuset="ct", cpu="ct", cpuacct="wide")
    b = v1_ctx(env.root, cpuset="wide", cpu="ct", cpuacct="wide")
    first_a, first_b = stat.produce(env, a), stat.produce(env, b)
    for _ in range(3):
        assert stat.produce(env, a) == first_a and stat.produce(env, b) == first_b
