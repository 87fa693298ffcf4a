"""devnames.py: which block devices a container sees and their names; never following a symlink out of the
container; the root device; the cache. Real device nodes (mknod, root) in a tmp tree standing in for
/proc/<pid>/root, with HostRoot.is_real_procfs True so the production path is used."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pylxcfs.devnames import DeviceNameCache, root_entry_from_mountinfo, scan_container_devices, whole_disk
from pylxcfs.errors import ProcessGone
from pylxcfs.hostfs import HostRoot

from .conftest import fixture_root

PID = 4321


def _tree(tmp_path: Path) -> tuple[HostRoot, Path]:
    root = tmp_path / "ctroot"
    (tmp_path / "proc" / str(PID)).mkdir(parents=True)
    root.mkdir()
    os.symlink(root, tmp_path / "proc" / str(PID) / "root")  # what the magic link resolves to
    (tmp_path / "proc" / str(PID) / "mountinfo").write_text("")
    return HostRoot(proc=str(tmp_path / "proc"), sys="/sys", cgroup="/sys/fs/cgroup", is_real_procfs=True), root


def test_block_nodes_named_as_in_container(tmp_path: Path) -> None:
    hr, root = _tree(tmp_path)
    dev = root / "dev"
    dev.mkdir()
    os.mknod(dev / "xvdb", 0o600 | 0o060000, os.makedev(7, 200))
    os.mknod(dev / "aaa-same", 0o600 | 0o060000, os.makedev(7, 200))  # second name: alphabetically first wins
    os.mknod(dev / "null", 0o666 | 0o020000, os.makedev(1, 3))  # char device: not a disk
    os.mknod(dev / "evil\n 7 0 x", 0o600 | 0o060000, os.makedev(7, 203))  # would inject a diskstats line
    os.mknod(dev / "sp ace", 0o600 | 0o060000, os.makedev(7, 204))
    (dev / "regular").write_text("block 7:201\n")  # fixture convention: NOT honoured on real procfs
    os.symlink("/dev/vda", dev / "vda")  # symlink to a host node: skipped (lstat semantics)
    (dev / "mapper").mkdir()
    os.mknod(dev / "mapper" / "vg-x", 0o600 | 0o060000, os.makedev(7, 202))  # subdirectory: not scanned
    got = scan_container_devices(hr, PID)
    assert got.nodes == {(7, 200): "aaa-same"}
    # Root device: st_dev of the container root (this tmp dir's filesystem), as the kernel reports it.
    st = os.stat(root)
    assert got.root_dev == (os.major(st.st_dev), os.minor(st.st_dev))


def test_dev_symlink_is_not_followed(tmp_path: Path) -> None:
    # An absolute symlink would resolve against the DAEMON's root: /dev here is the host's /dev, full of disks.
    hr, root = _tree(tmp_path)
    os.symlink("/dev", root / "dev")
    assert scan_container_devices(hr, PID).nodes == {}


def test_no_dev_directory(tmp_path: Path) -> None:
    hr, _ = _tree(tmp_path)
    assert scan_container_devices(hr, PID).nodes == {}


def test_gone_process(tmp_path: Path) -> None:
    hr, _ = _tree(tmp_path)
    with pytest.raises(ProcessGone):
        scan_container_devices(hr, PID + 1)


def test_fixture_convention_only_on_fixture_trees() -> None:
    got = scan_container_devices(fixture_root("x86_64-hybrid-debian12-disks"), 31337)
    assert got.nodes == {(7, 0): "xvdb", (7, 1): "xvdc"}  # "null" says "char 1:3": not a block node
    assert got.root_dev == (254, 0) and got.root_disk == (254, 0)


def test_root_on_partition_promoted_to_disk() -> None:
    got = scan_container_devices(fixture_root("x86_64-legacy-centos7"), 4242)
    assert got.root_dev == (8, 2) and got.root_disk == (8, 0)
    assert got.nodes == {(8, 32): "xvdc"}  # mapper/ subdir and the disk-link symlink are ignored


def test_overlay_root_unresolved_in_fixture() -> None:
    got = scan_container_devices(fixture_root("x86_64-unified-ubuntu20"), 777)
    assert got.root_dev is None and got.root_disk is None


def test_whole_disk_of_this_machines_root() -> None:
    st = os.stat("/")
    dev = (os.major(st.st_dev), os.minor(st.st_dev))
    disk = whole_disk(HostRoot(), dev)
    # sysfs: a whole disk has no "partition" file; its own dev file names it.
    assert not os.path.exists(f"/sys/dev/block/{disk[0]}:{disk[1]}/partition")
    with open(f"/sys/dev/block/{disk[0]}:{disk[1]}/dev") as f:
        assert f.read().strip() == f"{disk[0]}:{disk[1]}"


def test_mountinfo_topmost_root_wins() -> None:
    text = (
        "20 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        "21 20 0:5 / /dev rw - devtmpfs udev rw\n"
        "22 20 0:40 / / rw - overlay overlay rw,upperdir=/u,workdir=/w\n"
    )
    assert root_entry_from_mountinfo(text) == ((0, 40), "overlay", "rw,upperdir=/u,workdir=/w")
    assert root_entry_from_mountinfo("garbage\n") is None


def test_cache_ttl_and_bound(tmp_path: Path) -> None:
    hr, root = _tree(tmp_path)
    dev = root / "dev"
    dev.mkdir()
    cache = DeviceNameCache(ttl_s=0.2, max_entries=2)
    assert cache.get(hr, PID, 1).nodes == {}
    os.mknod(dev / "xvdq", 0o600 | 0o060000, os.makedev(7, 210))
    assert cache.get(hr, PID, 1).nodes == {}  # cached
    assert cache.get(hr, PID, 2).nodes == {(7, 210): "xvdq"}  # another init start time: another container
    time.sleep(0.25)
    assert cache.get(hr, PID, 1).nodes == {(7, 210): "xvdq"}  # expired and rescanned
    cache.get(hr, PID, 3)
    assert len(cache._d) == 2
