"""Pure tests of mount plans (ct/plan.py) and the mountinfo parser and queries (parse/mountinfo.py)."""

from __future__ import annotations

import pytest

from pylxcfs.ct.plan import attach_plan, detach_plan, lxcfs_mounts_under, relative_to_root, stacked_lxcfs
from pylxcfs.errors import ParseError
from pylxcfs.parse.mountinfo import lxcfs_overlays, mounts_at, parse_mountinfo, top_mount_at
from pylxcfs.views.registry import VIEW_PATHS, bind_targets, tree_of

# Shapes taken from a real runc container on this machine (C lxcfs 5.0.3 overlays), plus a stacked duplicate,
# a stale overlay under a rootfs path (hook stage) and an escaped space.
MOUNTINFO = """\
70 60 0:50 / / rw,relatime - overlay overlay rw
85 70 0:51 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
86 85 0:42 /proc/meminfo /proc/meminfo rw,nosuid,nodev,relatime shared:7 - fuse.lxcfs lxcfs rw,user_id=0
87 86 0:42 /proc/meminfo /proc/meminfo rw,nosuid,nodev,relatime master:7 - fuse.lxcfs lxcfs rw,user_id=0
88 85 0:42 /proc/cpuinfo /proc/cpuinfo rw,nosuid,nodev,relatime - fuse.lxcfs lxcfs rw,user_id=0
90 70 0:52 / /sys ro,nosuid - sysfs sysfs ro
91 90 0:42 /sys/devices/system/cpu/online /sys/devices/system/cpu/online rw - fuse.lxcfs lxcfs rw
92 70 0:42 / /var/lib/lxc/lxcfs rw - fuse.lxcfs lxcfs rw
93 70 0:53 / /b/c1/rootfs/proc rw - proc proc rw
94 93 0:42 /proc/uptime /b/c1/rootfs/proc/uptime rw - fuse.lxcfs lxcfs rw
95 70 0:54 / /mnt/with\\040space rw - tmpfs tmpfs rw
96 70 0:55 / /other rw - fuse.sshfs remote rw
"""


def test_attach_plan_comes_from_view_registry() -> None:
    p = attach_plan("c1", "/var/lib/lxc/lxcfs/", "/", 42, 7)
    # every file row outside a directory view, and each directory view as one directory bind
    assert [(m.view, m.directory) for m in p.mounts] == list(bind_targets())
    assert {m.view for m in p.mounts if not m.directory} == {v for v in VIEW_PATHS if tree_of(v) is None}
    assert [m.view for m in p.mounts if m.directory] == ["sys/devices/system/cpu"]
    assert "sys/devices/system/cpu/online" not in {m.view for m in p.mounts}  # comes with its directory
    assert all(m.source == f"/var/lib/lxc/lxcfs/{m.view}" and m.target == m.view for m in p.mounts)
    assert (p.pid, p.start_time, p.root, p.classic_dir) == (42, 7, "/", "/var/lib/lxc/lxcfs")
    assert p.to_json()["mounts"][0]["view"] == p.mounts[0].view
    with pytest.raises(ValueError):
        attach_plan("c1", "relative", "/", 1)
    with pytest.raises(ValueError):
        attach_plan("c1", "/x", "/", 1, views=(("../etc/passwd", False),))
    with pytest.raises(ValueError):
        detach_plan("c1", "rootfs", 1)


def test_parse_mountinfo_fields() -> None:
    ms = parse_mountinfo(MOUNTINFO)
    assert len(ms) == 12
    m = ms[2]
    assert (m.mount_id, m.parent_id, m.root, m.mount_point, m.fstype, m.source) == (
        86, 85, "/proc/meminfo", "/proc/meminfo", "fuse.lxcfs", "lxcfs")
    assert m.is_shared and m.is_lxcfs and not ms[3].is_shared
    assert ms[10].mount_point == "/mnt/with space"
    assert ms[11].is_fuse and not ms[11].is_lxcfs
    with pytest.raises(ParseError):
        parse_mountinfo("garbage line\n")
    with pytest.raises(ParseError):
        parse_mountinfo("x 1 0:1 / / rw - ext4 /dev/sda rw\n")


def test_stacks_and_overlays() -> None:
    ms = parse_mountinfo(MOUNTINFO)
    assert [m.mount_id for m in mounts_at(ms, "/proc/meminfo")] == [86, 87]
    top = top_mount_at(ms, "/proc/meminfo")
    assert top is not None and top.mount_id == 87
    assert top_mount_at(ms, "/nothing") is None
    assert [m.mount_id for m in lxcfs_overlays(ms)] == [91, 88, 87, 86]  # 94 is under a rootfs, not /proc
    assert stacked_lxcfs(ms, "/", "proc/meminfo") == 2
    assert stacked_lxcfs(ms, "/b/c1/rootfs", "proc/uptime") == 1


def test_relative_to_root_and_under() -> None:
    assert relative_to_root("/proc/meminfo", "/") == "proc/meminfo"
    assert relative_to_root("/b/c1/rootfs/proc/uptime", "/b/c1/rootfs") == "proc/uptime"
    assert relative_to_root("/b/c1/rootfsX/proc", "/b/c1/rootfs") is None
    assert relative_to_root("/", "/") is None
    ms = parse_mountinfo(MOUNTINFO)
    assert [rel for _, rel in lxcfs_mounts_under(ms, "/", ("proc/", "sys/"))] == [
        "sys/devices/system/cpu/online", "proc/cpuinfo", "proc/meminfo", "proc/meminfo"]
    assert [rel for _, rel in lxcfs_mounts_under(ms, "/b/c1/rootfs", ("proc/",))] == ["proc/uptime"]
