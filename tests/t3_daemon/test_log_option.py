"""`--log FILE`: the daemon's lines (supervisor and worker) go to FILE, also in the background, where they
would otherwise be discarded; an unusable FILE is a clear error before anything is mounted."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from support.fusedaemon import MEMINFO, PYLXCFS, make_fixture_root, mountinfo_entry

pytestmark = [pytest.mark.root, pytest.mark.fuse]  # the daemon runs as root and mounts


def _wait_gone(mnt: Path, pidfile: Path) -> None:
    for _ in range(200):
        if mountinfo_entry(mnt) is None and not pidfile.exists():
            return
        time.sleep(0.05)
    raise AssertionError("daemon did not stop")


def test_background_daemon_logs_to_file(tmp_path: Path) -> None:
    mnt, pidfile, log = tmp_path / "m", tmp_path / "pid", tmp_path / "d.log"
    r = subprocess.run([str(PYLXCFS), "--pidfile", str(pidfile), "--log", str(log), "--host-root",
                        str(make_fixture_root(tmp_path)), str(mnt)], capture_output=True, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        assert r.stdout == "" and r.stderr == ""
        assert (mnt / "proc/meminfo").read_text() == MEMINFO
        text = log.read_text()
        assert f"serving {mnt}" in text and "worker[" in text, text
        assert stat.S_IMODE(log.stat().st_mode) == 0o600
    finally:
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
        _wait_gone(mnt, pidfile)
    assert "bye" in log.read_text()


def test_foreground_daemon_logs_to_file(tmp_path: Path) -> None:
    mnt, pidfile, log = tmp_path / "m", tmp_path / "pid", tmp_path / "d.log"
    proc = subprocess.Popen([str(PYLXCFS), "-f", "--pidfile", str(pidfile), "--log", str(log), "--host-root",
                             str(make_fixture_root(tmp_path)), str(mnt)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (log.exists() and "serving /" in log.read_text()):
            assert proc.poll() is None and time.monotonic() < deadline, "daemon did not serve"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert out == b"" and err == b"", err
    _wait_gone(mnt, pidfile)


def test_unusable_log_file_is_a_clear_error(tmp_path: Path) -> None:
    mnt, pidfile = tmp_path / "m", tmp_path / "pid"
    bad = tmp_path / "no-such-dir" / "d.log"
    r = subprocess.run([str(PYLXCFS), "--pidfile", str(pidfile), "--log", str(bad), "--host-root",
                        str(make_fixture_root(tmp_path)), str(mnt)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"--log {bad}: No such file or directory" in r.stderr
    assert mountinfo_entry(mnt) is None and not pidfile.exists()
