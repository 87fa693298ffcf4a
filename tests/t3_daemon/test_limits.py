"""The daemon lifts its soft open-file limit to the hard limit (the views keep cgroup files open), and the
limit reaches the serving worker."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.fusedaemon import PYLXCFS, make_fixture_root, mountinfo_entry

pytestmark = [pytest.mark.root, pytest.mark.fuse]  # the daemon runs as root and mounts


def _soft_nofile(pid: int) -> int:
    m = re.search(r"Max open files\s+(\d+)", Path(f"/proc/{pid}/limits").read_text())
    assert m, "no open-files line"
    return int(m.group(1))


def test_soft_nofile_raised_to_hard(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert hard > 256, "this test needs a hard limit above 256"
    mnt, pidfile, log = tmp_path / "m", tmp_path / "pid", tmp_path / "log"

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with open(log, "wb") as lf:
        proc = subprocess.Popen([str(PYLXCFS), "-f", "--pidfile", str(pidfile), "--host-root",
                                 str(make_fixture_root(tmp_path)), str(mnt)],
                                stdout=lf, stderr=lf, preexec_fn=low_soft_limit)
    try:
        deadline = time.monotonic() + 15
        while "serving /" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.05)
        assert mountinfo_entry(mnt) is not None, log.read_text()
        workers = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert workers, "no worker"
        assert _soft_nofile(proc.pid) == hard
        assert all(_soft_nofile(int(w)) == hard for w in workers)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
        assert mountinfo_entry(mnt) is None
