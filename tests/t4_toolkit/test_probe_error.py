"""A FUSE server that is alive but answers every request with EIO (a daemon with a broken host tree, a wedged
backend that still replies): check-lxcfs says "error" (6), not "dead" (5), and `prestart` leaves its mount alone; only
ENOTCONN (the server is gone) makes a mount stale. The server is a few lines of mfusepy in a child process (test
support only; product code reaches FUSE through pylxcfs.fuse)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import containers as C
from t4_toolkit.conftest import TOOLKIT

pytestmark = [pytest.mark.root, pytest.mark.fuse]

SERVER = r"""
import errno, stat, sys, mfusepy

class Eio(mfusepy.Operations):
    def getattr(self, path, fh=None):
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2}
        raise mfusepy.FuseOSError(errno.EIO)

    def readdir(self, path, fh):
        raise mfusepy.FuseOSError(errno.EIO)

mfusepy.FUSE(Eio(), sys.argv[1], foreground=True, fsname="lxcfs", subtype="lxcfs", allow_other=True)
"""


def test_daemon_answering_errors_is_not_dead_and_prestart_keeps_it(tmp_path: Path) -> None:
    mnt = tmp_path / "lxcfs"
    mnt.mkdir()
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(mnt)], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not C.mounts_at(mnt) and time.monotonic() < deadline:
            assert srv.poll() is None, srv.stderr.read() if srv.stderr else ""
            time.sleep(0.05)
        (mount,) = C.mounts_at(mnt)
        r = subprocess.run([TOOLKIT, "--lxcfs-dir", str(mnt), "check-lxcfs", "--json"], capture_output=True,
                           text=True, timeout=60, check=False)
        assert r.returncode == 6 and '"health": "error"' in r.stdout, (r.stdout, r.stderr)
        assert "Input/output error" in r.stderr or "Input/output error" in r.stdout, r
        r = subprocess.run([TOOLKIT, "--lxcfs-dir", str(mnt), "prestart"], capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 0 and "leaving it alone" in r.stderr, r.stderr
        assert [m.mount_id for m in C.mounts_at(mnt)] == [mount.mount_id], "prestart detached a live daemon"
        # The same mount after its server is gone (ENOTCONN) is dead, and only then released by prestart.
        srv.kill()
        srv.wait(timeout=10)
        r = subprocess.run([TOOLKIT, "--lxcfs-dir", str(mnt), "check-lxcfs"], capture_output=True, text=True,
                           timeout=60, check=False)
        assert r.returncode == 5, (r.stdout, r.stderr)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.wait(timeout=10)
        C.lazy_umount(mnt)
