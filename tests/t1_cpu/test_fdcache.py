"""fdcache.FdCache: fresh content on every read, dead descriptors replaced, bounded size. The cgroup case
uses a real v1 cpuset directory this test creates (root) because the ENODEV behaviour is kernfs's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylxcfs.fdcache import FdCache

CPUSET = Path("/sys/fs/cgroup/cpuset")


def test_regular_file_rewritten_in_place(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("one\n")
    c = FdCache()
    assert c.read(str(f)) == b"one\n"
    f.write_text("two, longer\n")  # same inode (truncate + write)
    assert c.read(str(f)) == b"two, longer\n"
    assert len(c) == 1


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FdCache().read(str(tmp_path / "nope"))


def test_large_file_read_whole(tmp_path: Path) -> None:
    f = tmp_path / "big"
    data = os.urandom(200_000)
    f.write_bytes(data)
    assert FdCache().read(str(f)) == data


def test_bounded(tmp_path: Path) -> None:
    c = FdCache(max_fds=3)
    for i in range(10):
        (tmp_path / str(i)).write_text(str(i))
        assert c.read(str(tmp_path / str(i))) == str(i).encode()
    assert len(c) == 3
    c.close()
    assert len(c) == 0


@pytest.mark.root
def test_cgroup_removed_and_recreated() -> None:
    if os.geteuid() != 0 or not (CPUSET / "cgroup.procs").is_file():
        pytest.fail("needs root and the v1 cpuset hierarchy (present on this machine kind)")
    d = CPUSET / f"pylxcfs-test-cpu-fd-{os.getpid()}"
    d.mkdir()
    try:
        c = FdCache()
        path = str(d / "cpuset.cpus")
        assert c.read(path) == b"\n"
        (d / "cpuset.cpus").write_text("0")
        assert c.read(path) == b"0\n"  # new value through the same descriptor
        d.rmdir()  # an open descriptor does not block rmdir
        with pytest.raises(FileNotFoundError):
            c.read(path)  # ENODEV on the old descriptor, then ENOENT on reopen
        d.mkdir()
        assert c.read(path) == b"\n"  # the new cgroup's (empty) value, not the old node's
    finally:
        if d.exists():
            d.rmdir()
