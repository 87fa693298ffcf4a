"""fdcache.FdCache: fresh content on every read, descriptors kept only for files the kernel generates (the live
/proc and /sys, readable by any user), bounded size. The cgroup rmdir case needs root and a cgroup this test
creates: it is in tests/t3_realviews/test_fdcache_cgroup.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from pylxcfs.fdcache import FdCache


def test_regular_file_rewritten_in_place(tmp_path: Path) -> None:
    f = tmp_path / "x"
    f.write_text("one\n")
    c = FdCache()
    assert c.read(str(f)) == b"one\n"
    f.write_text("two, longer\n")  # same inode (truncate + write)
    assert c.read(str(f)) == b"two, longer\n"


def test_regular_file_replaced_by_rename_is_not_kept(tmp_path: Path) -> None:
    # A plain file (a --host-root tree, a fixture) is read and closed: a kept descriptor would go on reading the
    # old inode after a rename over it.
    f = tmp_path / "x"
    f.write_text("old\n")
    c = FdCache()
    assert c.read(str(f)) == b"old\n"
    assert len(c) == 0
    (tmp_path / "y").write_text("new\n")
    os.rename(tmp_path / "y", f)
    assert c.read(str(f)) == b"new\n"


def test_kernel_files_are_kept_and_fresh() -> None:
    c = FdCache()
    first = c.read("/proc/uptime")
    assert len(c) == 1
    deadline = time.monotonic() + 5
    while c.read("/proc/uptime") == first:  # advances every clock tick
        assert time.monotonic() < deadline, "a kept /proc/uptime descriptor kept giving the same content"
        time.sleep(0.02)
    assert len(c) == 1
    assert c.read("/sys/devices/system/cpu/online") == Path("/sys/devices/system/cpu/online").read_bytes()
    assert len(c) == 2
    c.close()


def test_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        FdCache().read(str(tmp_path / "nope"))


def test_large_file_read_whole(tmp_path: Path) -> None:
    f = tmp_path / "big"
    data = os.urandom(200_000)
    f.write_bytes(data)
    assert FdCache().read(str(f)) == data


def test_bounded() -> None:
    c = FdCache(max_fds=3)
    paths = ["/proc/uptime", "/proc/loadavg", "/proc/meminfo", "/proc/version", "/proc/self/cgroup",
             "/proc/self/status", "/sys/devices/system/cpu/online", "/sys/devices/system/cpu/possible"]
    for p in paths:
        assert c.read(p)
    assert len(c) == 3
    assert c.read("/proc/version") == Path("/proc/version").read_bytes()
    c.close()
    assert len(c) == 0
