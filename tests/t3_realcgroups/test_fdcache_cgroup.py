"""fdcache.FdCache on a real v1 cpuset directory this test creates (root): an open descriptor does not block the
rmdir, reads then fail with ENODEV and the cache reopens the path once (kernfs behaviour, so a real cgroup)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pylxcfs.fdcache import FdCache

CPUSET = Path("/sys/fs/cgroup/cpuset")


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
