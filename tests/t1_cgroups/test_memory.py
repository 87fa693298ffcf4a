"""cgroups/memory.py over fixture trees (the production read path, HostRoot-rebased paths, no patching)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pylxcfs.cgroups import memory
from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable, ParseError

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
MiB = 1 << 20
GiB = 1 << 30


def _cg(host: str, rel: str, v2: bool) -> CgroupDir:
    base = HOSTS / host / "sys/fs/cgroup"
    root = base if v2 else base / rel.split("/")[0]
    return CgroupDir(str(base / rel), v2, str(root))


def test_v2_limit_usage_swap() -> None:
    cg = _cg("x86_64-unified-ubuntu22", "system.slice/docker-abc.scope", True)
    assert memory.memory_limit(cg) == 512 * MiB
    assert memory.memory_usage(cg) == 200 * MiB
    assert memory.swap(cg, 512 * MiB, 200 * MiB) == memory.SwapUsage(256 * MiB, 10 * MiB)
    assert memory.swappiness(cg) is None


def test_v2_limit_only_on_an_ancestor() -> None:
    cg = _cg("x86_64-unified-ancestorlimit", "a/b/c", True)
    assert memory.memory_limit(cg) == GiB
    sw = memory.swap(cg, GiB, 300 * MiB)
    assert sw is not None and sw.limit_bytes is None and sw.usage_bytes == MiB


def test_v2_stat_keys() -> None:
    st = memory.memory_stat(_cg("x86_64-unified-ubuntu22", "system.slice/docker-abc.scope", True))
    assert st.cache == 70 * MiB and st.shmem == 6 * MiB
    assert (st.active_anon, st.inactive_anon, st.active_file, st.inactive_file) == (100 * MiB, 26 * MiB,
                                                                                    40 * MiB, 30 * MiB)
    assert st.slab_reclaimable == 4 * MiB and st.slab == 6 * MiB
    assert st.mapped == 8 * MiB and st.anon_huge == 2 * MiB  # exact keys, not LXCFS's prefix match
    assert not st.has_hierarchical_limit


def test_v1_stat_total_keys_and_hierarchical_limit() -> None:
    st = memory.memory_stat(_cg("x86_64-legacy-centos7", "memory/docker/ct1", False))
    assert st.cache == 90 * MiB and st.active_anon == 150 * MiB and st.inactive_file == 30 * MiB
    assert st.has_hierarchical_limit and st.hierarchical_limit == GiB
    assert st.hierarchical_memsw_limit == GiB + 512 * MiB
    assert st.slab == 0  # v1 memory.stat has no slab


def test_v1_walk_agrees_with_kernel_hierarchical_limit_on_capture() -> None:
    cg = _cg("x86_64-hybrid-debian12", "memory/lxc/ct", False)
    st = memory.memory_stat(cg)
    assert memory.memory_limit(cg) == st.hierarchical_limit == 512 * MiB


def test_v1_swap_is_memsw_minus_memory_in_one_place() -> None:
    cg = _cg("x86_64-legacy-centos7", "memory/docker/ct1", False)
    sw = memory.swap(cg, GiB, 300 * MiB)
    assert sw == memory.SwapUsage(512 * MiB, 20 * MiB)
    assert memory.swappiness(cg) == 60


def test_v1_conversion_edges() -> None:
    conv = memory._v1_swap_from_memsw
    assert conv(None, None, 10, 30) == memory.SwapUsage(None, 20)
    assert conv(None, 100, 10, 30) == memory.SwapUsage(100, 20)  # RAM unlimited: memsw bounds swap alone
    assert conv(100, 50, 10, 5) == memory.SwapUsage(0, 0)  # memsw below mem (transient): clamp, never negative


def test_swap_accounting_off_is_none() -> None:
    cg = _cg("x86_64-legacy-noswapacct", "memory/lxc/c2", False)
    assert memory.swap(cg, 256 * MiB, 64 * MiB) is None
    snap = memory.snapshot(cg, want_swap=True)
    assert snap.swap is None and snap.limit_bytes == 256 * MiB


def test_snapshot_skips_swap_when_not_wanted() -> None:
    snap = memory.snapshot(_cg("x86_64-legacy-centos7", "memory/docker/ct1", False), want_swap=False)
    assert snap.swap is None and snap.swappiness is None and snap.usage_bytes == 300 * MiB


def test_missing_required_file(tmp_path: Path) -> None:
    src = HOSTS / "x86_64-unified-ubuntu22/sys/fs/cgroup"
    shutil.copytree(src, tmp_path / "cg")
    d = tmp_path / "cg/system.slice/docker-abc.scope"
    (d / "memory.current").unlink()
    cg = CgroupDir(str(d), True, str(tmp_path / "cg"))
    with pytest.raises(CgroupUnavailable, match=r"memory\.current"):
        memory.memory_usage(cg)
    (d / "memory.stat").unlink()
    with pytest.raises(CgroupUnavailable, match=r"memory\.stat"):
        memory.memory_stat(cg)


def test_v1_own_limit_file_required(tmp_path: Path) -> None:
    d = tmp_path / "memory/x"
    d.mkdir(parents=True)
    with pytest.raises(CgroupUnavailable):
        memory.memory_limit(CgroupDir(str(d), False, str(tmp_path / "memory")))


def test_bad_values(tmp_path: Path) -> None:
    d = tmp_path / "cg/x"
    d.mkdir(parents=True)
    (d / "memory.max").write_text("lots\n")
    (d / "memory.stat").write_text("anon 1\nfile x\n")
    (d / "memory.current").write_text("\n")
    cg = CgroupDir(str(d), True, str(tmp_path / "cg"))
    with pytest.raises(ParseError):
        memory.memory_limit(cg)
    with pytest.raises(ParseError):
        memory.memory_stat(cg)
    with pytest.raises(ParseError):
        memory.memory_usage(cg)


def test_zero_limit_stops_the_walk(tmp_path: Path) -> None:
    (tmp_path / "cg/a/b").mkdir(parents=True)
    (tmp_path / "cg/a/memory.max").write_text("lots\n")  # never read: the walk stops at the 0 below it
    (tmp_path / "cg/a/b/memory.max").write_text("0\n")
    assert memory.memory_limit(CgroupDir(str(tmp_path / "cg/a/b"), True, str(tmp_path / "cg"))) == 0


def test_root_cgroup_has_no_limit() -> None:
    base = HOSTS / "x86_64-unified-ubuntu22/sys/fs/cgroup"
    assert memory.memory_limit(CgroupDir(str(base), True, str(base))) is None
