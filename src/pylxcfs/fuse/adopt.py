"""Adoption: a supervisor started on a mount point whose supervisor died takes over the live connection.

Role: runs once at start-up, before the mount point is prepared (cli.py). Workers do not die with their
supervisor (see docs/design-fuse.md, "Supervisor death"): they keep answering requests, so containers see
no error. A new `pylxcfs` on the same mount point finds those workers by their command line (the worker
module, `--mount MNT`, `--dev MAJ:MIN` equal to the device mountinfo shows at MNT), checks that no live
supervisor owns them (their `--parent` is not their parent any more), and copies the /dev/fuse descriptor
and the watchdog pipe out of one of them with pidfd_getfd(2) (Linux >= 5.6). The supervisor then starts
its own workers and retires the adopted ones once those serve, as a SIGHUP reload does.

It reads /proc only; it never stats the mount point (a stopped worker would hang us).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from dataclasses import dataclass, field

from pylxcfs import sharedtable, syscalls
from pylxcfs.fuse import mountpoint

log = logging.getLogger(__name__)

FSTYPE = "fuse.lxcfs"
# The worker's module names, old and new, so a supervisor adopts workers started by an older release.
WORKER_MODULES = ("pylxcfs.fuse.wire", "pylxcfs.fuse.worker")
FUSE_RDEV = os.makedev(10, 229)  # /dev/fuse (Documentation/admin-guide/devices.txt)


@dataclass(frozen=True, slots=True)
class WorkerProcess:
    """A worker as its command line describes it."""

    pid: int
    argv: tuple[str, ...]
    mount: str
    dev: str
    fuse_fd: int
    watchdog_fd: int
    parent: int
    state_fd: int = -1


@dataclass(slots=True)
class Adopted:
    """What a new supervisor takes over: the connection, the watchdog pipe, the shared state table (-1: none
    usable), the workers (pid, pidfd)."""

    fuse_fd: int
    watchdog_fd: int
    dev: str
    workers: list[tuple[int, int]] = field(default_factory=list)
    state_fd: int = -1

    def close(self) -> None:
        """Give everything back (adoption abandoned)."""
        for fd in (self.fuse_fd, self.watchdog_fd, self.state_fd, *(p for _pid, p in self.workers)):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.workers.clear()


def _argv(pid: int) -> tuple[str, ...] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return tuple(a.decode("utf-8", "surrogateescape") for a in raw.split(b"\0")[:-1])


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def parse_worker_argv(pid: int, argv: tuple[str, ...]) -> WorkerProcess | None:
    """The worker described by `argv` (python -m MODULE --opt value...), or None if it is not one of ours."""
    if len(argv) < 3 or argv[1] != "-m" or argv[2] not in WORKER_MODULES:
        return None
    opts: dict[str, str] = {}
    it = iter(argv[3:])
    for a in it:
        if a.startswith("--"):
            opts[a[2:]] = next(it, "")
    try:
        return WorkerProcess(pid, argv, opts["mount"], opts["dev"], int(opts["fd"]),
                             int(opts.get("watchdog-fd", "-1")), int(opts.get("parent", "0")),
                             int(opts.get("state-fd", "-1")))
    except (KeyError, ValueError):
        return None  # an older worker without --mount/--dev: it died with its supervisor anyway


def workers_serving(mnt: str, dev: str) -> list[WorkerProcess]:
    """Every live worker whose command line says it serves the connection `dev` mounted at `mnt`."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        argv = _argv(int(d))
        w = parse_worker_argv(int(d), argv) if argv else None
        if w is not None and w.mount == mnt and w.dev == dev:
            found.append(w)
    return found


def supervised(w: WorkerProcess) -> bool:
    """True while the worker's own supervisor lives (it is still the worker's parent)."""
    return w.parent > 0 and _ppid(w.pid) == w.parent


def _take_table(pidfd: int, w: WorkerProcess) -> int:
    """A copy of the worker's shared state table (sharedtable.py), or -1 if it has none we recognise."""
    if w.state_fd < 0:
        return -1
    try:
        fd = syscalls.pidfd_getfd(pidfd, w.state_fd)
    except OSError as e:
        log.warning("adopt: cannot take the state table of worker %d: %s (the loadavg history restarts)", w.pid, e)
        return -1
    if not sharedtable.is_table(fd):
        log.warning("adopt: descriptor %d of worker %d is not a state table", w.state_fd, w.pid)
        os.close(fd)
        return -1
    return fd


def adopt(mnt: str) -> Adopted | None:
    """Take over the connection at `mnt` (canonical path) from orphaned workers; None if there is nothing to
    adopt (no fuse.lxcfs mount there, no worker of it alive, or its supervisor lives: then the mount point
    is busy and cli.py refuses it as before)."""
    entry = mountpoint.mount_at(mnt)
    if entry is None or entry.fstype != FSTYPE:
        return None
    found = workers_serving(mnt, entry.dev)
    if not found or any(supervised(w) for w in found):
        return None
    got: Adopted | None = None
    pidfds: list[tuple[int, int]] = []
    for w in found:
        try:
            pidfd = os.pidfd_open(w.pid)
        except OSError:
            continue  # exited meanwhile
        if _argv(w.pid) != w.argv:  # the pid was reused between the scan and pidfd_open
            os.close(pidfd)
            continue
        if got is None:
            try:
                fd = syscalls.pidfd_getfd(pidfd, w.fuse_fd)
            except OSError as e:
                log.warning("adopt: cannot take the FUSE descriptor of worker %d: %s", w.pid, e)
                os.close(pidfd)
                continue
            st = os.fstat(fd)
            if not stat.S_ISCHR(st.st_mode) or st.st_rdev != FUSE_RDEV:
                log.warning("adopt: descriptor %d of worker %d is not /dev/fuse", w.fuse_fd, w.pid)
                os.close(fd)
                os.close(pidfd)
                continue
            wd = -1
            if w.watchdog_fd >= 0:
                try:
                    wd = syscalls.pidfd_getfd(pidfd, w.watchdog_fd)
                except OSError:
                    wd = -1
            got = Adopted(fd, wd, entry.dev, state_fd=_take_table(pidfd, w))
        pidfds.append((w.pid, pidfd))
    if got is None:
        for _pid, p in pidfds:
            os.close(p)
        return None
    got.workers = pidfds
    return got
