"""Tier 4 (issue 4) with a reader on the host: the supervisor keeps the connection while workers die or
are replaced. A reader process opens MNT/proc/meminfo every 50 ms; the daemon serves a --host-root
tree whose meminfo differs from this machine's, so "the renderer's output" is the fixture text.

Each scenario prints its reads, errors and longest read (SCENARIO {...} on stderr; also appended to
$PYLXCFS_T4_RESULTS when set)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.fusedaemon import (
    MEMINFO,
    Daemon,
    ReaderLoop,
    alive,
    make_fixture_root,
    mountinfo_entry,
    record_result,
    start_daemon,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.slow]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    # One worker: these scenarios are the single-worker worst cases (the pool has its own tests).
    d = start_daemon(tmp_path, "--workers", "1", "--host-root", str(make_fixture_root(tmp_path)))
    try:
        yield d
    finally:
        d.stop()


def test_worker_sigkill_under_reader_loop(daemon: Daemon, tmp_path: Path) -> None:
    reader = ReaderLoop(daemon.mnt / "proc/meminfo", tmp_path / "reads.jsonl")
    try:
        wait_for(lambda: reader.count() >= 10, 10, "reader warm-up")
        old = daemon.worker()
        killed_at = time.monotonic()  # the reader stamps with CLOCK_MONOTONIC too
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: daemon.workers() not in ([], [old]), 1.5, "a new worker within a second or so")
        wait_for(lambda: reader.count() >= 10 + 60, 15, "reads after the kill")
    finally:
        res = reader.stop()
    record_result(tmp_path, res.summary("host: worker SIGKILL"))
    assert res.errors == [], res.errors[:3]  # no ENOTCONN, no EIO: the connection never dropped
    late = [r for r in res.records if float(r["t"]) > killed_at + 2]  # type: ignore[arg-type]
    assert len(late) >= 20 and all(r["data"] == MEMINFO for r in late)
    assert all(r["data"] == MEMINFO for r in res.records)
    assert "died (signal 9)" in daemon.log_text()


def test_sighup_reload_has_no_failed_read(daemon: Daemon, tmp_path: Path) -> None:
    reader = ReaderLoop(daemon.mnt / "proc/meminfo", tmp_path / "reads.jsonl", interval=0.01)
    seen = set()
    try:
        wait_for(lambda: reader.count() >= 10, 10, "reader warm-up")
        for _ in range(3):
            before = daemon.worker()
            seen.add(before)
            os.kill(daemon.pid, signal.SIGHUP)
            wait_for(lambda b=before: daemon.workers() not in ([], [b]) and len(daemon.workers()) == 1, 15,
                     "the old worker retired and a new one serving")
            n = reader.count()
            wait_for(lambda n=n: reader.count() >= n + 20, 10, "reads after the reload")
        seen.add(daemon.worker())
    finally:
        res = reader.stop()
    record_result(tmp_path, res.summary("host: SIGHUP reload x3"))
    assert len(seen) == 4  # three replacements happened
    assert res.errors == [], res.errors[:3]
    assert all(r["data"] == MEMINFO for r in res.records)
    assert daemon.log_text().count("retired") == 3 and "died" not in daemon.log_text()


def test_request_taken_by_a_dying_worker_is_resent(tmp_path: Path) -> None:
    """FUSE_NOTIFY_RESEND: the worker is stuck inside a request (the host file is a FIFO nobody writes, and
    LOOKUP/OPEN read it) when it is killed; the reader must get its bytes from the next worker instead of
    hanging forever."""
    root = make_fixture_root(tmp_path)
    fifo = root / "proc/meminfo"
    os.unlink(fifo)
    os.mkfifo(fifo)
    d = start_daemon(tmp_path, "--workers", "1", "--host-root", str(root))
    cat = None
    try:
        first = d.worker()
        cat = subprocess.Popen(["cat", str(d.mnt / "proc/meminfo")], stdout=subprocess.PIPE)
        time.sleep(0.5)
        assert cat.poll() is None  # the worker took the request and blocks on the FIFO
        # Replace the FIFO by a regular file before the kill: the stuck worker keeps the FIFO it already opened,
        # every later open (the next worker's) reads the file. Without the resend, `cat` would hang forever.
        staged = root / "proc/meminfo.new"
        staged.write_bytes(b"resent\n")
        os.rename(staged, fifo)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: d.workers() not in ([], [first]), 5, "a new worker")
        out, _ = cat.communicate(timeout=15)
        assert cat.returncode == 0 and out == b"resent\n"
        assert "died (signal 9)" in d.log_text()
    finally:
        if cat is not None and cat.poll() is None:
            cat.kill()
        d.stop()


def test_supervisor_sigkill_workers_serve_and_a_new_supervisor_adopts(daemon: Daemon, tmp_path: Path) -> None:
    """The supervisor dies: its worker keeps answering (no ENOTCONN); a pylxcfs started again on the mount point
    adopts the connection (pidfd_getfd), starts its own workers and retires the orphan: no read ever fails."""
    reader = ReaderLoop(daemon.mnt / "proc/meminfo", tmp_path / "reads.jsonl", interval=0.02)
    d2 = None
    try:
        wait_for(lambda: reader.count() >= 10, 10, "reader warm-up")
        orphan = daemon.worker()
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.proc.wait(5)
        n = reader.count()
        wait_for(lambda: reader.count() >= n + 20, 10, "reads served by the orphaned worker")
        assert alive(orphan) and mountinfo_entry(daemon.mnt) is not None
        d2 = start_daemon(tmp_path, "--workers", "1", "--host-root", str(make_fixture_root(tmp_path)),
                          mnt=daemon.mnt, name="adopter")
        wait_for(lambda: not alive(orphan), 15, "the adopted worker retired")
        assert d2.workers() and orphan not in d2.workers()
        n = reader.count()
        wait_for(lambda: reader.count() >= n + 20, 10, "reads served by the new supervisor's worker")
        assert "adopted the connection" in d2.log_text() and "retired" in d2.log_text()
    finally:
        res = reader.stop()
        if d2 is not None:
            d2.stop()
    record_result(tmp_path, res.summary("host: supervisor SIGKILL, restart adopts"))
    assert res.errors == [], res.errors[:3]
    assert all(r["data"] == MEMINFO for r in res.records)
    assert mountinfo_entry(daemon.mnt) is None  # d2's clean stop unmounted the adopted mount


def test_all_processes_killed_watchdog_removes_the_mount(daemon: Daemon, tmp_path: Path) -> None:
    """The fallback: nothing holds the connection any more (supervisor and every worker SIGKILLed); the
    watchdog lazily unmounts the dead mount point and it can be served again."""
    workers = daemon.workers()
    assert daemon.watchdog and alive(daemon.watchdog)
    os.kill(daemon.pid, signal.SIGKILL)
    daemon.proc.wait(5)
    time.sleep(0.3)
    assert mountinfo_entry(daemon.mnt) is not None and alive(daemon.watchdog)  # the workers still serve
    for w in workers:
        os.kill(w, signal.SIGKILL)
    wait_for(lambda: mountinfo_entry(daemon.mnt) is None, 5, "the watchdog's lazy unmount")
    wait_for(lambda: not alive(daemon.watchdog or 0), 5, "the watchdog to exit")
    os.stat(daemon.mnt)  # a plain directory again, no ENOTCONN
    # and the mount point can be served again right away
    d2 = start_daemon(tmp_path, "--host-root", str(make_fixture_root(tmp_path)), mnt=daemon.mnt, name="again")
    try:
        assert (d2.mnt / "proc/meminfo").read_text() == MEMINFO
    finally:
        d2.stop()


def test_sigstopped_daemon_does_not_wedge_and_recovers(daemon: Daemon, tmp_path: Path) -> None:
    worker = daemon.worker()
    # The reader runs before the stop (a Python start-up under load can take longer than the stopped period):
    # its next read starts within one interval (50 ms) of the stop and blocks until SIGCONT.
    reader = ReaderLoop(daemon.mnt / "proc/meminfo", tmp_path / "reads.jsonl")
    try:
        wait_for(lambda: reader.count() >= 3, 10, "reader warm-up")
        for p in (daemon.pid, worker):
            os.kill(p, signal.SIGSTOP)
        time.sleep(0.1)  # a read answered just before the stop is logged by now
        n = reader.count()
        time.sleep(1.0)
        assert reader.count() == n  # nobody answers while stopped
        resumed = time.monotonic()  # the reader stamps CLOCK_MONOTONIC too
        for p in (worker, daemon.pid):
            os.kill(p, signal.SIGCONT)
        wait_for(lambda: reader.count() >= n + 10, 10, "reads after SIGCONT")
    finally:
        for p in (worker, daemon.pid):
            os.kill(p, signal.SIGCONT)
        res = reader.stop()
    record_result(tmp_path, res.summary("host: SIGSTOP 1 s then SIGCONT"))
    assert res.errors == []
    # The read in flight during the stop was answered only after the daemon resumed (it was blocked, not failed).
    blocked = res.records[n]
    assert float(blocked["t"]) + float(blocked["dt"]) >= resumed  # type: ignore[arg-type]
    assert all(r["data"] == MEMINFO for r in res.records)


def test_sigstopped_daemon_blocked_reader_can_be_killed(daemon: Daemon, tmp_path: Path) -> None:
    worker = daemon.worker()
    os.kill(worker, signal.SIGSTOP)
    try:
        cat = subprocess.Popen(["cat", str(daemon.mnt / "proc/meminfo")], stdout=subprocess.DEVNULL)
        with pytest.raises(subprocess.TimeoutExpired):
            cat.wait(0.5)
        cat.kill()  # FUSE waits are killable: the test is never wedged
        assert cat.wait(5) == -signal.SIGKILL
    finally:
        os.kill(worker, signal.SIGCONT)
    assert (daemon.mnt / "proc/meminfo").read_text() == MEMINFO
