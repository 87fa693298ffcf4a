"""The zygote: one pre-imported process per generation that forks the generation's workers.

Role: memory. A worker exec'd afresh (`python -m pylxcfs.fuse.worker`) builds its own copy of every module it
imports: about 12 MB of private heap per worker, so the pool of two cost as much as three daemons. Instead the
supervisor starts, for each generation, one fresh `python -m pylxcfs.fuse.zygote --control-fd C <worker
arguments>` from the code on disk (so a SIGHUP reload still runs the code on disk now), which imports everything
a worker needs, moves those objects out of the collector's reach (gc.freeze(), so a collection in a worker does
not write to, and so copy, the pages they live on), and then forks one worker per request of the supervisor. The
workers share the zygote's pages copy-on-write; only what each one writes becomes its own.

The protocol on the control socket (SOCK_SEQPACKET, one end held by the supervisor):
- zygote -> supervisor: b"ready" once imported;
- supervisor -> zygote: b"fork" carrying two descriptors (SCM_RIGHTS): the write end of the new worker's
  readiness pipe and its stats page (a memfd);
- zygote -> supervisor: the new worker's pid (struct "=i"; <= 0 if the fork failed).
End of file on the socket (the supervisor died or let it go) ends the zygote; it also has PR_SET_PDEATHSIG
SIGKILL, so it never outlives its supervisor, and it never serves: it only holds the connection to hand it on.

The workers are the supervisor's children, as exec'd workers were: the zygote double-forks and the supervisor is
a child subreaper (PR_SET_CHILD_SUBREAPER), so the orphaned worker is re-parented to it at once. That keeps
everything that finds workers by their parent and command line working: the supervisor reaps them and gets
their exit status, adoption (fuse/adopt.py) sees `--parent` == their parent while the supervisor lives, and the
worker's command line says `-m pylxcfs.fuse.worker` like an exec'd one's (the forked worker overwrites the module
name in its own argument area, which is why both module names have the same length).

This module's top level imports the standard library (and fuse/statspage.py) only: the supervisor imports it for
`Zygote`.
"""

from __future__ import annotations

import array
import collections
import contextlib
import gc
import logging
import mmap
import os
import signal
import socket
import struct
import subprocess
import sys
import time

from pylxcfs.fuse.statspage import MODULE as WORKER_MODULE

log = logging.getLogger(__name__)

MODULE = "pylxcfs.fuse.zygote"
assert len(MODULE) == len(WORKER_MODULE)  # the forked worker renames itself in place (rename_argv)
READY = b"ready"
FORK = b"fork"
_PID = struct.Struct("=i")
REPARENT_WAIT_S = 10.0  # a forked worker waits this long at most for the kernel to re-parent it


# -- supervisor side -----------------------------------------------------------------------------------------------
class Zygote:
    """The supervisor's handle on one generation's zygote: its process, its control socket, and the forks it was
    asked for and has not answered yet (each: readiness pipe read end, stats page, time asked)."""

    def __init__(self, gen: int, worker_argv: list[str], pass_fds: tuple[int, ...]) -> None:
        self.gen = gen
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            argv = [sys.executable, "-m", MODULE, "--control-fd", str(theirs.fileno()), *worker_argv]
            self.popen = subprocess.Popen(argv, pass_fds=(*pass_fds, theirs.fileno()), close_fds=True,
                                          stdin=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        self.sock.setblocking(False)
        self.pid = self.popen.pid
        self.started = time.monotonic()
        self.ready = False
        self.gone = False
        self.pending: collections.deque[tuple[int, mmap.mmap, float]] = collections.deque()

    def fileno(self) -> int:
        """The control socket (readable: readiness, a forked pid, or end of file)."""
        return self.sock.fileno()

    def request(self, ready_r: int, ready_w: int, stats: mmap.mmap, stats_fd: int) -> bool:
        """Ask for one worker; it gets `ready_w` and `stats_fd` (closed here either way). False if the zygote is
        gone (then `ready_r` is closed too and `stats` unmapped)."""
        try:
            self.sock.sendmsg([FORK], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", (ready_w, stats_fd)))])
        except OSError:
            self.gone = True
            os.close(ready_r)
            stats.close()
            return False
        finally:
            os.close(ready_w)
            os.close(stats_fd)
        self.pending.append((ready_r, stats, time.monotonic()))
        return True

    def receive(self) -> list[tuple[int, int, mmap.mmap, float]]:
        """What the zygote said: the workers it forked, as (pid, ready_r, stats, asked at). A pid <= 0 (the fork
        failed) comes back too: the caller closes its descriptors. Sets `gone` on end of file."""
        out: list[tuple[int, int, mmap.mmap, float]] = []
        while True:
            try:
                msg = self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError:
                msg = b""
            if not msg:
                self.gone = True
                return out
            if msg == READY:
                self.ready = True
            elif len(msg) == _PID.size and self.pending:
                ready_r, stats, asked = self.pending.popleft()
                out.append((_PID.unpack(msg)[0], ready_r, stats, asked))

    def oldest_request(self) -> float | None:
        """When the oldest unanswered fork was asked for."""
        return self.pending[0][2] if self.pending else None

    def poll(self) -> int | None:
        """Its exit status once it has exited (it is our child: Popen reaps it)."""
        return self.popen.poll()

    def close(self, wait_s: float = 2.0) -> None:
        """Let it go: close the socket (it exits at end of file), kill it, reap it, drop the unanswered forks."""
        self.sock.close()
        self.gone = True
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(wait_s)
        while self.pending:
            ready_r, stats, _ = self.pending.popleft()
            os.close(ready_r)
            stats.close()


# -- zygote side ---------------------------------------------------------------------------------------------------
def rename_argv(old: str, new: str) -> None:
    """Overwrite the argument `old` of our own command line (what /proc/PID/cmdline and ps show) with `new`,
    of the same length. Writes our argument area through /proc/self/mem (no privilege needed, unlike
    PR_SET_MM_ARG_START, which wants CAP_SYS_RESOURCE)."""
    if len(old) != len(new):
        raise ValueError("rename_argv: the names must have the same length")
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (proc(5): fields 48 and 49)
    fd = os.open("/proc/self/mem", os.O_RDWR | os.O_CLOEXEC)
    try:
        args = os.pread(fd, end - start, start).split(b"\0")
        i = args.index(old.encode())
        os.pwrite(fd, new.encode(), start + sum(len(a) + 1 for a in args[:i]))
    finally:
        os.close(fd)


def _preload(worker_argv: list[str]) -> None:
    """Import everything a worker imports (the modules the Renderer loads lazily too)."""
    from pylxcfs.fuse import worker
    from pylxcfs.fuse.config import DaemonConfig
    from pylxcfs.service import load_registry
    from pylxcfs.statusdir import Publisher  # noqa: F401  (imported by Renderer.start)

    load_registry()  # imports every view's module
    args = worker._parse(worker_argv)
    import json

    if DaemonConfig.from_json(json.loads(args.config)).opts.enable_loadavg:
        from pylxcfs.sampler import LoadavgSampler  # noqa: F401


def _fork_worker(ctl: socket.socket, fds: list[int]) -> int:
    """Double-fork one worker with `fds` (readiness pipe, stats page). Returns, in the worker, the pid of the
    intermediate process it was forked from (> 0); in the zygote, 0."""
    for fd in fds:
        os.set_inheritable(fd, False)  # nothing the worker execs gets them
    r, w = os.pipe()
    mid = os.fork()
    if mid == 0:  # the intermediate: fork the worker, tell its pid, exit (the worker goes to the subreaper)
        try:
            os.close(r)
            me = os.getpid()
            pid = os.fork()
            if pid == 0:
                os.close(w)
                return me
            os.write(w, _PID.pack(pid))
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.close(w)
    for fd in fds:
        os.close(fd)
    os.waitpid(mid, 0)  # once it is reaped, the worker has been re-parented
    got = os.read(r, _PID.size)
    os.close(r)
    pid = _PID.unpack(got)[0] if len(got) == _PID.size else -1
    ctl.send(_PID.pack(pid))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pylxcfs.fuse.zygote --control-fd C WORKER-ARGS...` (started by the supervisor only)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "--control-fd":
        print("pylxcfs zygote: started by the supervisor only", file=sys.stderr)
        return 2
    gc.disable()  # no collection until the freeze: it would leave freed holes in the pages the workers share
    ctl = socket.socket(fileno=int(argv[1]))
    ctl.set_inheritable(False)
    worker_argv = argv[2:]
    from pylxcfs import syscalls
    from pylxcfs.fuse import board, worker
    from pylxcfs.log import setup_logging

    syscalls.set_pdeathsig(signal.SIGKILL)
    args = worker._parse(worker_argv)
    setup_logging(False, tag=f"zygote[{os.getpid()}]")
    if args.parent and os.getppid() != args.parent:
        log.error("supervisor %d is gone before we started", args.parent)
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which lets us go
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    _preload(worker_argv)
    gc.collect()
    gc.freeze()
    syscalls.malloc_trim()  # the free pages of start-up: given back, not inherited by every worker
    ctl.send(READY)
    page = board.new_page()  # the generation's board (fuse/board.py), inherited by every worker forked below
    forks = 0
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(ctl, 16, 2)
        except InterruptedError:
            continue
        if not msg:
            return 0  # the supervisor let us go (or died)
        if msg != FORK or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            continue
        mid = _fork_worker(ctl, fds)
        if mid:
            break
        forks += 1
    # The worker: drop the zygote's socket, look like an exec'd worker, wait to be the supervisor's child.
    ctl.close()
    gc.enable()  # (the parent-death signal is not inherited by a fork)
    rename_argv(MODULE, WORKER_MODULE)
    deadline = time.monotonic() + REPARENT_WAIT_S
    while os.getppid() == mid and time.monotonic() < deadline:
        time.sleep(0.001)
    ready_fd, stats_fd = fds
    return worker.main([*worker_argv, "--ready-fd", str(ready_fd), "--stats-fd", str(stats_fd)],
                       board_page=(page, forks))


if __name__ == "__main__":
    raise SystemExit(main())
