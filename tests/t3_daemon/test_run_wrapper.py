"""contrib/pylxcfs-run (the no-systemd service wrapper): it mounts, restarts the daemon after
a supervisor SIGKILL (the new daemon adopts the still-serving workers, no stop path), and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from support.fusedaemon import MEMINFO, REPO, make_fixture_root, mountinfo_entry, wait_for

pytestmark = [pytest.mark.root, pytest.mark.fuse]


def test_wrapper_restarts_after_sigkill_and_stops_cleanly(tmp_path: Path) -> None:
    mnt, pidfile = tmp_path / "lxcfs", tmp_path / "pylxcfs.pid"
    env = dict(os.environ, PYLXCFS=str(REPO / ".venv/bin/pylxcfs"),
               TOOLKIT=str(REPO / ".venv/bin/isulad-lxcfs-toolkit"),
               LXCFS_DIR=str(mnt), PIDFILE=str(pidfile), RESTART_DELAY="0.2",
               PYLXCFS_ARGS=f"--host-root {make_fixture_root(tmp_path)}",
               # confine the toolkit's --all to nothing of anybody else's
               PYLXCFS_STATE_ROOTS=f"runc:{tmp_path / 'no-runc'}", PYLXCFS_REGISTRY_DIR=str(tmp_path / "registry"),
               PYLXCFS_PROCSCAN="0")
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    wrapper = subprocess.Popen(["sh", str(REPO / "contrib/pylxcfs-run")], env=env, stdout=log, stderr=log)
    def started() -> int:
        return (tmp_path / "run.log").read_text().count("remount --all done")

    try:
        wait_for(lambda: started() == 1, 20, "the first daemon serving (start path done)")
        first = int(pidfile.read_text())
        assert (mnt / "proc/meminfo").read_text() == MEMINFO
        os.kill(first, signal.SIGKILL)  # its workers keep serving: the wrapper restarts it, which adopts them
        wait_for(lambda: started() == 2, 20, "the wrapper's restart (the new daemon adopted the workers)")
        assert int(pidfile.read_text()) != first
        assert "restarting to adopt them" in (tmp_path / "run.log").read_text()
        assert (mnt / "proc/meminfo").read_text() == MEMINFO
        wrapper.send_signal(signal.SIGTERM)
        assert wrapper.wait(20) == 0
        assert mountinfo_entry(mnt) is None and not pidfile.exists()
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            with open(pidfile) if pidfile.exists() else open(os.devnull) as f:
                pid = f.read().strip()
            if pid:
                os.kill(int(pid), signal.SIGTERM)
        while mountinfo_entry(mnt) is not None:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
        log.close()
    text = (tmp_path / "run.log").read_text()
    assert "daemon exited with status" in text
