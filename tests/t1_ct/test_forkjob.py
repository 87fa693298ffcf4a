"""forkjob.fd_from_child with real processes: an fd comes back, an errno comes back, a stuck child is killed."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from pylxcfs import forkjob


def test_fd_comes_back_from_the_child(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("hello")
    res = forkjob.fd_from_child(lambda: os.open(tmp_path / "f", os.O_RDONLY), 5.0)
    assert res.fd is not None and not res.timed_out
    try:
        assert os.read(res.fd, 16) == b"hello"
    finally:
        os.close(res.fd)


def test_errno_comes_back_from_the_child(tmp_path: Path) -> None:
    res = forkjob.fd_from_child(lambda: os.open(tmp_path / "missing", os.O_RDONLY), 5.0)
    assert res.fd is None and res.errno == errno.ENOENT and not res.timed_out


def test_stuck_child_is_killed_at_the_deadline() -> None:
    def stuck() -> int:
        time.sleep(60)
        return 0

    t = time.monotonic()
    res = forkjob.fd_from_child(stuck, 0.3)
    assert res.fd is None and res.timed_out and res.errno == errno.ETIMEDOUT
    assert time.monotonic() - t < 30  # far below the child's 60 s: it was killed, not waited for
    forkjob._reap_later()
    assert not forkjob._unreaped  # a SIGKILLed sleeper is gone at once
