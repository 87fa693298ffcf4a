"""Forked jobs with a hard deadline: the one place that runs work in a child process we can SIGKILL.

Why a child at all: some operations can block forever on a filesystem server we do not control. A stat() of a
FUSE mount point waits for that daemon (a SIGSTOPped one never answers), a path lookup on an NFS or 9p layer waits
for its server, and setns(CLONE_NEWNS) is refused in a multithreaded process. A FUSE or NFS wait is killable
(fs/fuse/dev.c request_wait_answer, TASK_KILLABLE), so a child killed at its deadline bounds the cost; the parent
never does the risky call itself.

Three shapes, one mechanism (fork, a pipe or socket back, SIGKILL at the deadline, bounded reaping):
  - `run_jobs`/`run_one`: a Python callable returning a JSON-able dict, results over a pipe (the toolkit's
    namespace work, the health probe's reads). Only for single-threaded callers (the toolkit CLI and the hook):
    the job runs arbitrary code, and setns(CLONE_NEWNS) needs a single-threaded process.
  - `stat_errno`: stat(path), the answer in the exit code (mount point hygiene before the daemon mounts and in
    the supervisor after a worker died).
  - `fd_from_child`: one system call that returns an fd, passed back over a socket (SCM_RIGHTS). Safe in the
    multithreaded daemon: the child runs only that call and os._exit, nothing that could need another thread's
    lock.

A child that does not die after SIGKILL (an uninterruptible wait) is never waited on in the caller's path: it is
remembered and reaped later without blocking.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import select
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
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


def stat_errno(path: str, timeout_s: float = 2.0) -> int | None:
    """stat(path) in a forked child. Returns 0 if it answered, the errno if it failed, None if it did not
    answer within the deadline (a stopped or wedged FUSE daemon)."""
    _reap_later()
    pid = os.fork()
    if pid == 0:  # child: no Python cleanup, just the answer in the exit code
        code = 0
        try:
            os.stat(path)
        except OSError as e:
            code = e.errno or 255
        os._exit(code & 0xFF)
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            _kill(pid)  # FUSE waits are killable (request_wait_answer)
            _reap(pid, 2.0)
            return None
        time.sleep(0.01)


# --- Python jobs with JSON results (toolkit) -------------------------------------------------------------------

@dataclass
class WorkerResult:
    """ok: the job returned; error: why not (exception text, 'timed out after Ns', or how the worker died)."""

    label: str
    ok: bool
    data: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    timed_out: bool = False
    elapsed_s: float = 0.0


@dataclass
class _Worker:
    label: str
    pid: int
    fd: int
    started: float
    deadline: float
    buf: bytearray = field(default_factory=bytearray)


def _child(job: Job, wfd: int) -> None:
    code = 0
    try:
        payload: dict[str, Any] = {"ok": True, "data": job()}
    except BaseException as exc:  # everything goes back to the parent as text
        payload = {"ok": False, "error": f"{type(exc).__name__}: {exc}",
                   "trace": traceback.format_exc(limit=5)}
        code = 1
    try:
        data = json.dumps(payload).encode()
        while data:
            n = os.write(wfd, data)
            data = data[n:]
    finally:
        os._exit(code)


def spawn(label: str, job: Job, timeout_s: float) -> _Worker:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        # Default dispositions: a SIGTERM/SIGINT to the toolkit's process group must end workers too.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _child(job, wfd)
    os.close(wfd)
    now = time.monotonic()
    return _Worker(label, pid, rfd, now, now + timeout_s)


def _reap_worker(w: _Worker, grace_s: float) -> int | None:
    """waitpid with a bounded wait; None when the child is still not gone (left as a zombie-to-be, never waited on
    forever: a child stuck in an uninterruptible FUSE wait must not hang us)."""
    end = time.monotonic() + grace_s
    while True:
        pid, status = os.waitpid(w.pid, os.WNOHANG)
        if pid:
            return status
        if time.monotonic() >= end:
            return None
        time.sleep(0.01)


def _finish(w: _Worker, timed_out: bool) -> WorkerResult:
    elapsed = time.monotonic() - w.started
    os.close(w.fd)
    if timed_out:
        os.kill(w.pid, signal.SIGKILL)
        _reap_worker(w, 2.0)
        return WorkerResult(w.label, False, error=f"timed out after {elapsed:.1f}s (daemon hung or stopped?)",
                            timed_out=True, elapsed_s=elapsed)
    status = _reap_worker(w, 5.0)
    try:
        payload = json.loads(bytes(w.buf).decode() or "null")
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        how = "unknown" if status is None else (
            f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit {os.WEXITSTATUS(status)}")
        return WorkerResult(w.label, False, error=f"worker died without a result ({how})", elapsed_s=elapsed)
    if payload.get("ok"):
        return WorkerResult(w.label, True, data=dict(payload.get("data") or {}), elapsed_s=elapsed)
    return WorkerResult(w.label, False, error=str(payload.get("error")), elapsed_s=elapsed)


def run_jobs(jobs: list[tuple[str, Job]], parallel: int = 4, timeout_s: float = 10.0,
             on_done: Callable[[WorkerResult], None] | None = None) -> list[WorkerResult]:
    """Run jobs with at most `parallel` workers alive, each killed at its own deadline. Results in job order."""
    pending = list(enumerate(jobs))
    running: dict[int, tuple[int, _Worker]] = {}
    results: dict[int, WorkerResult] = {}
    while pending or running:
        while pending and len(running) < max(1, parallel):
            idx, (label, job) = pending.pop(0)
            w = spawn(label, job, timeout_s)
            running[w.fd] = (idx, w)
        now = time.monotonic()
        wait = max(0.0, min(w.deadline for _, w in running.values()) - now)
        ready, _, _ = select.select(list(running), [], [], wait)
        for fd in ready:
            idx, w = running[fd]
            chunk = os.read(fd, 65536)
            if chunk:
                w.buf += chunk
                continue
            del running[fd]
            results[idx] = _finish(w, timed_out=False)
            if on_done:
                on_done(results[idx])
        now = time.monotonic()
        for fd, (idx, w) in list(running.items()):
            if now >= w.deadline:
                del running[fd]
                results[idx] = _finish(w, timed_out=True)
                if on_done:
                    on_done(results[idx])
    return [results[i] for i in range(len(jobs))]


def run_one(label: str, job: Job, timeout_s: float = 10.0) -> WorkerResult:
    return run_jobs([(label, job)], 1, timeout_s)[0]
