"""Run namespace work in forked single-threaded workers, each with a hard deadline, results over a pipe.

Why a fork per job: setns(CLONE_NEWNS) fails with EINVAL in a multithreaded process, and any touch of a FUSE path
(open_tree of a daemon file, fstatfs) can block forever on a stopped daemon. Only a child we can SIGKILL at its deadline
may do either (a FUSE wait is killable: request_wait_answer). The parent never touches a FUSE path itself. Callers
must be single-threaded when they fork (the toolkit CLI and the hook are; the daemon must never use this).
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Job = Callable[[], dict[str, Any]]


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


def _reap(w: _Worker, grace_s: float) -> int | None:
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
        _reap(w, 2.0)
        return WorkerResult(w.label, False, error=f"timed out after {elapsed:.1f}s (daemon hung or stopped?)",
                            timed_out=True, elapsed_s=elapsed)
    status = _reap(w, 5.0)
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
