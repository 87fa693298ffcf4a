"""cgroups/layout.py: layout detection from mountinfo text and controller -> directory mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylxcfs.cgroups.layout import CgroupLayout, Hierarchy, Layout, detect_layout, map_controllers
from pylxcfs.parse.mountinfo import parse_mountinfo
from pylxcfs.parse.pid import parse_cgroup

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"


def _layout(host: str, unified: frozenset[str] | None = None) -> CgroupLayout:
    mi = (HOSTS / host / "proc/self/mountinfo").read_text()
    return detect_layout(parse_mountinfo(mi), lambda mp: "/R" + mp, lambda d: unified)


def test_hybrid_capture_is_hybrid_with_separate_cpu_cpuacct() -> None:
    lay = _layout("x86_64-hybrid-debian12", frozenset())
    assert lay.layout is Layout.HYBRID
    assert lay.v1["cpu"].mount_dir == "/R/sys/fs/cgroup/cpu"
    assert lay.v1["cpuacct"].mount_dir == "/R/sys/fs/cgroup/cpuacct"
    assert lay.unified is not None and lay.unified.mount_dir == "/R/sys/fs/cgroup/unified"


def test_legacy_combined_cpu_cpuacct_mount() -> None:
    lay = _layout("x86_64-legacy-centos7")
    assert lay.layout is Layout.LEGACY and lay.unified is None
    assert lay.v1["cpu"] is lay.v1["cpuacct"]
    assert lay.v1["cpu"].mount_dir == "/R/sys/fs/cgroup/cpu,cpuacct"
    assert "name=systemd" not in lay.v1


def test_unified() -> None:
    lay = _layout("x86_64-unified-ubuntu22", frozenset({"memory", "cpu"}))
    assert lay.layout is Layout.UNIFIED and not lay.v1
    assert lay.unified is not None and lay.unified.controllers == frozenset({"memory", "cpu"})


def test_unreadable_cgroup_controllers_means_all() -> None:
    lay = _layout("x86_64-unified-ubuntu22", None)
    assert lay.unified is not None and {"memory", "cpu", "cpuset", "io"} <= lay.unified.controllers


def test_ignored_mounts_do_not_count() -> None:
    mi = (HOSTS / "x86_64-hybrid-debian12/proc/self/mountinfo").read_text()
    lay = detect_layout(parse_mountinfo(mi), lambda mp: None, lambda d: None)
    assert lay.layout is Layout.LEGACY and not lay.v1 and lay.unified is None


def test_map_legacy_combined() -> None:
    lay = _layout("x86_64-legacy-centos7")
    dirs = map_controllers(lay, parse_cgroup("10:memory:/docker/ct1\n4:cpuacct,cpu:/docker/ct1\n"))
    mem = dirs["memory"]
    assert mem is not None and mem.path == "/R/sys/fs/cgroup/memory/docker/ct1" and not mem.v2
    assert mem.mount_root == "/R/sys/fs/cgroup/memory"
    cpu, acct = dirs["cpu"], dirs["cpuacct"]
    assert cpu is not None and acct is not None and cpu.path == acct.path == "/R/sys/fs/cgroup/cpu,cpuacct/docker/ct1"
    assert cpu is acct  # one object per (hierarchy, path): each namespace's dirs are kept in every worker
    assert dirs["cpuset"] is None and dirs["blkio"] is None  # not in the process's cgroup file


def test_map_unified_all_point_at_the_one_dir() -> None:
    lay = _layout("x86_64-unified-ubuntu22", frozenset({"cpuset", "cpu", "io", "memory"}))
    dirs = map_controllers(lay, parse_cgroup("0::/system.slice/x.scope\n"))
    for name in ("memory", "cpu", "cpuacct", "cpuset", "blkio"):
        d = dirs[name]
        assert d is not None and d.v2 and d.path == "/R/sys/fs/cgroup/system.slice/x.scope", name
    assert len({id(dirs[name]) for name in ("memory", "cpu", "cpuacct", "cpuset", "blkio", "unified")}) == 1


def test_map_unified_controller_not_enabled_is_none() -> None:
    lay = _layout("x86_64-unified-ubuntu22", frozenset({"memory"}))
    dirs = map_controllers(lay, parse_cgroup("0::/a\n"))
    assert dirs["memory"] is not None
    assert dirs["cpu"] is None and dirs["cpuset"] is None and dirs["blkio"] is None
    assert dirs["cpuacct"] is not None  # cpu.stat exists in every cgroup2 directory


def test_map_hybrid_v1_wins_and_empty_unified_unused() -> None:
    lay = _layout("x86_64-hybrid-debian12", frozenset())
    dirs = map_controllers(lay, parse_cgroup("4:memory:/lxc/ct\n1:cpu:/lxc/ct\n0::/\n"))
    mem = dirs["memory"]
    assert mem is not None and not mem.v2 and mem.path.endswith("/memory/lxc/ct")
    assert dirs["cpuset"] is None  # no v1 line, and the unified hierarchy has no cpuset controller


@pytest.mark.parametrize(
    ("cg", "expected"),
    [("/lxc/ct/init.scope", "/m/lxc/ct"), ("/init.scope", "/m"), ("/", "/m"), ("/a/init.scope.d", "/m/a/init.scope.d")],
)
def test_init_scope_is_pruned(cg: str, expected: str) -> None:
    lay = CgroupLayout(Layout.LEGACY, {"memory": Hierarchy("/m", "/", False, frozenset({"memory"}))}, None)
    d = map_controllers(lay, parse_cgroup(f"3:memory:{cg}\n"))["memory"]
    assert d is not None and d.path == expected


def test_mount_from_inside_a_cgroup_namespace_strips_its_root() -> None:
    lay = CgroupLayout(Layout.LEGACY, {"memory": Hierarchy("/m", "/docker/x", False, frozenset({"memory"}))}, None)
    d = map_controllers(lay, parse_cgroup("3:memory:/docker/x/sub\n"))["memory"]
    assert d is not None and d.path == "/m/sub"
