"""devnames.py, the pure parts: what the init's mountinfo text allows (root device, which /dev to scan), an
overlay's upper device from the daemon's own mount table, the fixture-tree scan, the cache. The kernel-facing
scan (openat2/statx on real namespaces, attacks by an unprivileged tenant) is tested in t3_disks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pylxcfs.devnames import (
    MOUNTINFO_CAP_BYTES,
    DeviceNameCache,
    overlay_upper_device,
    plan_devices,
    scan_container_devices,
    whole_disk,
)
from pylxcfs.hostfs import HostRoot
from pylxcfs.parse.mountinfo import containing_mount, overlay_layer_dirs, parse_mountinfo

from .conftest import FIXTURES, fixture_root

ENGINE = (  # what runc leaves in a container's mountinfo (pivot_root into a bind-mounted rootfs)
    "2001 1990 254:0 /tmp/bundle/rootfs / rw,relatime - ext4 /dev/vda rw\n"
    "2002 2001 0:90 / /proc rw,nosuid - proc proc rw\n"
    "2003 2001 0:91 / /dev rw,nosuid - tmpfs tmpfs rw,mode=755\n"
    "2004 2003 0:92 / /dev/pts rw - devpts devpts rw\n"
)
HOST = (  # the daemon's own mountinfo on a docker host
    "20 1 254:0 / / rw - ext4 /dev/vda rw\n"
    "30 20 254:16 / /var/lib/docker rw - xfs /dev/vdb rw\n"
    "31 20 254:32 / /var/lib/dockerx rw - xfs /dev/vdc rw\n"
    "40 30 0:52 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay "
    "rw,lowerdir=/var/lib/docker/overlay2/l/A,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/w\n"
)


def _m(text: str) -> list:  # type: ignore[type-arg]
    return parse_mountinfo(text)


def _no_host() -> list:  # type: ignore[type-arg]
    raise AssertionError("the host's mount table is only consulted for an overlay root")


def test_engine_container_root_and_dev() -> None:
    p = plan_devices(_m(ENGINE), _no_host)
    assert p.root_dev == (254, 0)
    assert p.dev_mount is not None and p.dev_mount.mount_id == 2003


def test_plain_chroot_has_nothing() -> None:
    # A chroot into a directory (the attack into <mnt>/proc) has no mount at "/" in its mountinfo: no root
    # device and no /dev scan, whatever else is mounted under it.
    p = plan_devices(_m("2003 1990 0:91 / /dev rw - tmpfs tmpfs rw\n"), _no_host)
    assert p.root_dev is None and p.dev_mount is None


def test_dev_must_be_tmpfs() -> None:
    for fstype in ("fuse.fuse-overlayfs", "fuse", "ext4", "nfs4", "autofs", "overlay"):
        text = ENGINE.replace("- tmpfs tmpfs rw,mode=755", f"- {fstype} x rw")
        assert plan_devices(_m(text), _no_host).dev_mount is None, fstype
    no_dev = "".join(ln + "\n" for ln in ENGINE.splitlines() if " /dev " not in ln)
    assert plan_devices(_m(no_dev), _no_host).dev_mount is None
    # A FUSE mount stacked on top of the tmpfs /dev is what a lookup reaches: refused.
    stacked = ENGINE + "2009 2003 0:99 / /dev rw - fuse.x x rw\n"
    assert plan_devices(_m(stacked), _no_host).dev_mount is None


def test_root_on_network_fs_is_not_jumped_to() -> None:
    for fstype in ("nfs", "nfs4", "9p", "cifs", "ceph"):
        text = ENGINE.replace("254:0 /tmp/bundle/rootfs / rw,relatime - ext4 /dev/vda",
                              f"0:77 /export / rw - {fstype} srv:/export")
        p = plan_devices(_m(text), _no_host)
        assert p.dev_mount is None and p.root_dev is None, fstype


def test_fuse_root_may_be_jumped_to_but_has_no_device() -> None:
    text = ENGINE.replace("254:0 /tmp/bundle/rootfs / rw,relatime - ext4 /dev/vda", "0:80 / / rw - fuse.sshfs h:")
    p = plan_devices(_m(text), _no_host)
    assert p.root_dev is None and p.dev_mount is not None  # the scan itself never sends FUSE a request


def test_topmost_root_wins() -> None:
    text = ("20 1 8:1 / / rw - ext4 /dev/sda1 rw\n21 20 0:5 / /dev rw - devtmpfs udev rw\n"
            "22 20 8:17 / / rw - xfs /dev/sdb1 rw\n")
    assert plan_devices(_m(text), _no_host).root_dev == (8, 17)


def test_overlay_upper_from_the_hosts_table() -> None:
    ct = "700 650 0:52 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/whatever/the/ct/says,workdir=/w\n" \
         "701 700 0:91 / /dev rw - tmpfs tmpfs rw\n"
    p = plan_devices(_m(ct), lambda: _m(HOST))
    # The host's overlay 0:52 has upperdir under /var/lib/docker (254:16), not /var/lib/dockerx or /.
    assert p.root_dev == (254, 16)
    assert p.dev_mount is not None


def test_engine_overlay_walk_rules() -> None:
    ct = "700 650 0:52 / / rw - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w\n" \
         "701 700 0:91 / /dev rw - tmpfs tmpfs rw\n"
    # Layers on xfs: the daemon may jump to the root itself; a child walks `dev` only if the cache cannot answer.
    p = plan_devices(_m(ct), lambda: _m(HOST))
    assert p.walk_ok and not p.child_first
    # The v2 test guest: the root overlay's layers are not in the table (they were mounted before switch_root),
    # so the overlay itself is their holder: everything happens in the child.
    guest = ("40 22 0:24 / / rw - overlay root rw,lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work\n"
             "45 40 0:5 / /dev rw - devtmpfs devtmpfs rw\n")
    p = plan_devices(_m(guest), lambda: _m(guest))
    assert p.walk_ok and p.child_first and p.dev_mount is not None and p.root_dev is None
    # A lower layer on NFS or FUSE (a lazy-pulling snapshotter): child first as well.
    for fstype in ("nfs4", "fuse.stargz", "9p", "cifs"):
        host = HOST + f"50 20 0:77 / /snap rw - {fstype} srv rw\n" + \
            "41 20 0:53 / /var/lib/docker/overlay2/x/merged rw - overlay overlay " \
            "rw,lowerdir=/var/lib/docker/l/A:/snap/layer\\:1,upperdir=/var/lib/docker/x/diff,workdir=/var/lib/docker/w\n"
        p = plan_devices(_m(ct.replace("0:52", "0:53")), lambda h=host: _m(h))  # type: ignore[misc]
        assert p.walk_ok and p.child_first, fstype
    # A tenant's own overlay (not in the host's table) is never walked.
    p = plan_devices(_m(ct.replace("0:52", "0:99")), lambda: _m(HOST))
    assert not p.walk_ok and p.dev_mount is None
    # Any other root: the dentry cache only.
    assert not plan_devices(_m(ENGINE), _no_host).walk_ok


def test_overlay_layer_dirs_as_text() -> None:
    m = _m("41 20 0:53 / /m rw - overlay overlay rw,lowerdir=/a\\:b:/c\\040d::/data,upperdir=/u,workdir=/w,"
           "lowerdir+=/e,datadir+=/f,index=off\n")[0]
    assert overlay_layer_dirs(m) == ["/a:b", "/c d", "/data", "/u", "/w", "/e", "/f"]


def test_tenant_overlay_is_not_resolved() -> None:
    # The upperdir string goes through the daemon's own mount (the attack): never resolved, and an overlay the
    # host's table does not hold is the tenant's own, so its root is not entered either.
    ct = ("900 850 0:61 / / rw - overlay overlay rw,lowerdir=/b/lower,upperdir=/b/mnt/sys/../../x/upper,"
          "workdir=/b/x/work,userxattr\n901 900 0:62 / /dev rw - tmpfs tmpfs rw\n")
    p = plan_devices(_m(ct), lambda: _m(HOST))
    assert p.root_dev is None and p.dev_mount is None
    # Even if the host held that overlay, a ".." in its upperdir makes it unresolvable text.
    host = HOST + ct.splitlines()[0].replace("900 850", "41 20") + "\n"
    assert overlay_upper_device(_m(ct)[0], _m(host)) is None


def test_containing_mount_is_textual_and_component_wise() -> None:
    host = _m(HOST)
    assert containing_mount(host, "/var/lib/docker/x").mount_id == 30  # type: ignore[union-attr]
    assert containing_mount(host, "/var/lib/dockerx/y").mount_id == 31  # type: ignore[union-attr]
    assert containing_mount(host, "/var/lib/dock").mount_id == 20  # type: ignore[union-attr]
    assert containing_mount(host, "/var/lib/docker").mount_id == 30  # type: ignore[union-attr]
    for bad in ("relative/path", "/var/lib/docker/../../etc", "/var/./lib"):
        assert containing_mount(host, bad) is None


def test_fixture_convention_only_on_fixture_trees() -> None:
    got = scan_container_devices(fixture_root("x86_64-hybrid-debian12-disks"), 31337)
    assert got.nodes == {(7, 0): "xvdb", (7, 1): "xvdc"}  # "null" says "char 1:3": not a block node
    assert got.root_dev == (254, 0) and got.root_disk == (254, 0)


def test_placeholder_files_count_only_where_the_root_says_so() -> None:
    # The same tree as a root without block_nodes_as_files (as the host's own root is): the placeholder files are
    # not block nodes, and the real scan's mount-id check finds no tmpfs /dev there: no nodes at all.
    t = fixture_root("x86_64-hybrid-debian12-disks")
    plain = HostRoot(proc=t.proc, sys=t.sys, cgroup=t.cgroup, top=t.top)
    got = scan_container_devices(plain, 31337)
    assert got.nodes == {}
    assert got.root_dev == (254, 0)  # the root device still comes from mountinfo


def test_root_on_partition_promoted_to_disk() -> None:
    got = scan_container_devices(fixture_root("x86_64-legacy-centos7-disks"), 4242)
    assert got.root_dev == (8, 2) and got.root_disk == (8, 0)
    assert got.nodes == {(8, 32): "xvdc"}  # mapper/ subdir and the disk-link symlink are ignored


def test_overlay_root_found_in_the_hosts_table_of_a_fixture() -> None:
    # The container's "/" is overlay 0:52; the fixture's proc/self/mountinfo (the daemon's) holds that overlay
    # with upperdir under the host root on 259:2 (nvme0n1p2), whose disk sysfs names 259:0.
    got = scan_container_devices(fixture_root("x86_64-unified-ubuntu20"), 777)
    assert got.root_dev == (259, 2) and got.root_disk == (259, 0)
    assert got.nodes == {(252, 0): "data"}


def test_whole_disk_of_this_machines_root() -> None:
    st = os.stat("/")
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    disk = whole_disk(HostRoot(), dev)
    # sysfs: a whole disk has no "partition" file; its own dev file names it.
    assert not os.path.exists(f"/sys/dev/block/{disk[0]}:{disk[1]}/partition")
    with open(f"/sys/dev/block/{disk[0]}:{disk[1]}/dev") as f:
        assert f.read().strip() == f"{disk[0]}:{disk[1]}"


def _copy_fixture(tmp_path: Path) -> tuple[HostRoot, Path]:
    top = tmp_path / "host"
    shutil.copytree(FIXTURES / "x86_64-hybrid-debian12-disks", top, symlinks=True)
    return HostRoot.from_dir(top), top / "proc" / "31337"


def test_cache_ttl_bound_and_per_container_keys(tmp_path: Path) -> None:
    hr, pdir = _copy_fixture(tmp_path)
    now = [100.0]
    cache = DeviceNameCache(ttl_s=1.0, max_entries=2, clock=lambda: now[0])
    assert set(cache.get(hr, 31337, 1).nodes.values()) == {"xvdb", "xvdc"}
    (pdir / "root" / "dev" / "xvdq").write_text("block 7:9\n")
    assert (7, 9) not in cache.get(hr, 31337, 1).nodes  # cached
    assert cache.get(hr, 31337, 2).nodes[(7, 9)] == "xvdq"  # another init start time: another container
    now[0] += 1.5
    assert cache.get(hr, 31337, 1).nodes[(7, 9)] == "xvdq"  # re-checked after the TTL
    cache.get(hr, 31337, 3)
    assert len(cache) == 2


def test_default_cache_holds_thousands_of_containers(tmp_path: Path) -> None:
    hr, _ = _copy_fixture(tmp_path)
    cache = DeviceNameCache(clock=lambda: 5.0)
    for start in range(1000):
        cache.get(hr, 31337, start)
    scans = cache.stats.scans
    for start in range(1000):
        cache.get(hr, 31337, start)
    assert len(cache) == 1000 and cache.stats.scans == scans  # the second round is all hits


def test_oversized_mountinfo_is_not_inspected(tmp_path: Path) -> None:
    hr, pdir = _copy_fixture(tmp_path)
    mi = (pdir / "mountinfo").read_text()
    filler = "".join(f"{3000 + i} 2001 0:{100 + i} / /mnt/m{i} rw - tmpfs tmpfs rw\n"
                     for i in range(MOUNTINFO_CAP_BYTES // 40))
    (pdir / "mountinfo").write_text(mi + filler)
    got = DeviceNameCache().get(hr, 31337, 1)
    assert got.nodes == {} and got.root_dev is None
