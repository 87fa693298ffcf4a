"""Forked jobs with a hard deadline: the one place that runs work in a child process we can SIGKILL.

Why a child at all: some operations can block forever on a filesystem server we do not control. A stat() of a
FUSE mount point waits for that daemon (a SIGSTOPped one never answers), a path lookup on an NFS or 9p layer waits
for its server, and setns(CLONE_NEWNS) is refused in a multithreaded process. A FUSE or NFS wait is killable
(fs/fuse/dev.c request_wait_answer, TASK_KILLABLE), so a child killed at its deadline bounds the cost; the parent
never does the risky call itself.

`fd_from_child`: one system call that returns an fd, passed back over a socket (SCM_RIGHTS). Safe in the
multithreaded daemon: the child runs only that call and os._exit, nothing that could need another thread's lock.

A child that does not die after SIGKILL (an uninterruptible wait) is never waited on in the caller's path: it is
remembered and reaped later without blocking.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Job = Callable[[], dict[str, Any]]

_unreaped: set[int] = set()  # children SIGKILLed that had not exited yet


def _reap_later() -> None:
    """Collect children left behind by earlier deadlines (never blocks)."""
    for pid in list(_unreaped):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _unreaped.discard(pid)


def _reap(pid: int, grace_s: float) -> int | None:
    """waitpid with a bounded wait; None (and remembered for later) when the child is still there."""
    end = time.monotonic() + grace_s
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        if time.monotonic() >= end:
            _unreaped.add(pid)
            return None
        time.sleep(0.005)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class FdResult:
    """fd: the fd the child opened (ours now), or None with `error` (an errno, or the deadline passed)."""

    fd: int | None
    errno: int = 0
    timed_out: bool = False


def fd_from_child(opener: Callable[[], int], timeout_s: float) -> FdResult:
    """Run `opener` (one system call returning an fd, e.g. an openat2 on an inherited dirfd) in a forked child and
    receive its fd over SCM_RIGHTS. The child is SIGKILLed at the deadline."""
    _reap_later()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
        if pid == 0:  # child: one call, one message, _exit (no Python cleanup, no locks, no logging)
            try:
                # Only SIGKILL reaches this child: a handler of the daemon's (SIGTERM: stop serving) must never
                # run in a copy of it.
                signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
                parent.close()
                try:
                    fd = opener()
                    socket.send_fds(child, [b"ok"], [fd])
                except OSError as e:
                    child.send(b"err %d" % (e.errno or errno.EIO))
            finally:
                os._exit(0)
        child.close()
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                _kill(pid)
                _reap(pid, 0.2)
                return FdResult(None, errno.ETIMEDOUT, timed_out=True)
            try:
                ready, _, _ = select.select([parent], [], [], left)
            except InterruptedError:
                continue
            if ready:
                break
        try:
            msg, fds, _, _ = socket.recv_fds(parent, 64, 1)
        except OSError as e:
            msg, fds = b"err %d" % (e.errno or errno.EIO), []
        _reap(pid, 1.0)
        if msg == b"ok" and len(fds) == 1:
            return FdResult(fds[0])
        for fd in fds:
            os.close(fd)
        code = msg[4:] if msg.startswith(b"err ") else b""
        return FdResult(None, int(code) if code.isdigit() else errno.EIO)
    finally:
        parent.close()
        child.close()
