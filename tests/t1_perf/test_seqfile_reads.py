"""Reads of many-record seq_files (one record per mount, VMA, device or CPU) go to EOF: the kernel hands back at
most its page-sized buffer per read(2), so one short read is not the whole file (/proc/self/mountinfo, diskstats
and cpuinfo on bigger hosts were cut at about 4 KiB)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from pylxcfs.fdcache import FdCache
from pylxcfs.hostfs import read_bytes


def _reference(path: str) -> bytes:
    with open(path, "rb") as f:  # buffered reads loop to EOF
        return f.read()


def test_many_record_file_is_read_whole() -> None:
    # /proc/<pid>/maps of an idle Python (one record per mapping, dozens of libraries): longer than a page and
    # stable while it sleeps.
    child = subprocess.Popen([sys.executable, "-c", "import ssl, sqlite3, time; print(1, flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"1\n"
        path = f"/proc/{child.pid}/maps"
        want = _reference(path)
        fd = os.open(path, os.O_RDONLY)
        try:
            first = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        assert len(first) < len(want), "one read(2) returned the whole file: the test needs a longer one"
        assert read_bytes(path) == want
        c = FdCache()
        try:
            assert c.read(path) == want
            time.sleep(0.01)
            assert c.read(path) == want  # the kept descriptor, re-read from offset 0
        finally:
            c.close()
    finally:
        child.kill()
        child.wait()
