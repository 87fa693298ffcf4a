"""Mount point hygiene: find what is mounted at a path, tell a stale FUSE mount from a live one,
clean stale ones, refuse live ones.

Role: runs before the daemon mounts (cli.py) and in the supervisor's watchdog after the daemon died.
It reads /proc/self/mountinfo (never statfs magic) and probes liveness with stat(2) in a forked child
with a deadline (forkjob.stat_errno), because stat on the mount of a stopped (SIGSTOP) daemon blocks until
that daemon answers: a probe in our own process could hang the start-up forever.
"""

from __future__ import annotations

import errno
import logging
import os

from pylxcfs import forkjob, syscalls
from pylxcfs.errors import QuietError
from pylxcfs.parse.mountinfo import Mount, parse_mountinfo, top_mount_at

log = logging.getLogger(__name__)

EXIT_MOUNTPOINT_BUSY = 3

def canonical(path: str) -> str:
    """Absolute path with the parent's symlinks resolved; the last component is not stat'ed (it may be a
    dead mount, where stat fails with ENOTCONN)."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    return os.path.join(os.path.realpath(parent), name) if name else path


def mount_at(path: str, mountinfo: str | None = None) -> Mount | None:
    """The top-most mount whose mount point is `path` (already canonical), or None."""
    if mountinfo is None:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            mountinfo = f.read()
    return top_mount_at(parse_mountinfo(mountinfo), path)


def lazy_unmount(path: str) -> None:
    """umount2(MNT_DETACH): detach now, free when the last user is gone (works on busy mounts)."""
    syscalls.umount2(path, syscalls.MNT_DETACH)


def prepare(path: str, probe_timeout_s: float = 2.0) -> str:
    """Make `path` ready to mount on: create it, lazily unmount stale FUSE mounts on it, refuse a live
    (or unresponsive) FUSE mount with QuietError(EXIT_MOUNTPOINT_BUSY). Returns the canonical path."""
    path = canonical(path)
    for _ in range(16):  # stale mounts may be stacked (a daemon restarted in a loop)
        entry = mount_at(path)
        if entry is None or not entry.fstype.startswith("fuse"):
            if entry is not None:
                log.warning("%s is a %s mount; mounting on top of it", path, entry.fstype)
            os.makedirs(path, exist_ok=True)
            return path
        state = forkjob.stat_errno(path, probe_timeout_s)
        if state in (errno.ENOTCONN, errno.ECONNABORTED):
            log.warning("%s is a stale %s mount (%s): unmounting it lazily", path, entry.fstype,
                        os.strerror(state))
            lazy_unmount(path)
            continue
        what = "does not answer (stopped daemon?)" if state is None else "is live"
        raise QuietError(f"{path}: a {entry.fstype} filesystem ({entry.source}) is mounted there and {what}; "
                         f"stop that daemon first (or unmount it: umount -l {path})", EXIT_MOUNTPOINT_BUSY)
    raise QuietError(f"{path}: could not clear stale mounts", EXIT_MOUNTPOINT_BUSY)
