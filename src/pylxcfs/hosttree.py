"""Read-only access to one host directory and everything below it, never following a symlink.

Role: what a per-container directory view (views/registry.py TreeSpec) passes through: lstat, listing,
readlink and file contents of the host's own entries, e.g. /sys/devices/system/cpu/cpu1/topology/core_id.
Paths are relative to the directory and resolved with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from a
descriptor of it, so neither ".." nor a symlink anywhere in a path can lead elsewhere: a symlink is reported
as a symlink (the kernel of the reader resolves it, in the reader's namespace, through our tree again), and
only the daemon's own view of the host directory is ever read, never a container's. No policy here.
"""

from __future__ import annotations

import os
import stat

from pylxcfs import syscalls as sc
from pylxcfs.hostfs import READ_CAP_BYTES

__all__ = ["HostTree", "bad_name"]

_RESOLVE = sc.RESOLVE_BENEATH | sc.RESOLVE_NO_SYMLINKS
_CHUNK = 1 << 16


def bad_name(name: str) -> bool:
    """True for a name that is not one directory entry (empty, ".", "..", or containing "/" or NUL)."""
    return name in ("", ".", "..") or "/" in name or "\0" in name


class HostTree:
    """One host directory, opened lazily (a worker opens its own descriptor once)."""

    def __init__(self, top: str) -> None:
        self.top = top
        self._fd = -1

    def _dir(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._fd

    def _open(self, rel: str, flags: int) -> int:
        # "" is the directory itself; openat2 refuses an empty path, "." is the same thing.
        return sc.openat2(self._dir(), rel or ".", flags | os.O_CLOEXEC, _RESOLVE)

    def lstat(self, rel: str) -> os.stat_result:
        """lstat of top/rel (a final symlink is stat'ed itself). Raises OSError (ENOENT, ELOOP, ...)."""
        fd = self._open(rel, os.O_PATH | os.O_NOFOLLOW)
        try:
            return os.fstat(fd)
        finally:
            os.close(fd)

    def listdir(self, rel: str) -> list[tuple[str, int]]:
        """(name, st_mode file-type bits) of each entry of the directory top/rel, in the host's order."""
        fd = self._open(rel, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            with os.scandir(fd) as it:
                out = []
                for e in it:
                    try:
                        mode = e.stat(follow_symlinks=False).st_mode
                    except OSError:  # vanished between readdir and stat (a CPU went offline)
                        continue
                    out.append((e.name, stat.S_IFMT(mode)))
                return out
        finally:
            os.close(fd)

    def readlink(self, rel: str) -> str:
        """The target of the symlink top/rel, as the host has it (EINVAL if it is no symlink)."""
        fd = self._open(rel, os.O_PATH | os.O_NOFOLLOW)
        try:
            return os.readlink("", dir_fd=fd)
        finally:
            os.close(fd)

    def read(self, rel: str, cap: int = READ_CAP_BYTES) -> bytes:
        """The contents of the regular file top/rel (sysfs attributes are generated per open; read to EOF)."""
        fd = self._open(rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise IsADirectoryError(21, "not a regular file", rel)
            parts = []
            total = 0
            while total < cap:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
                total += len(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

    def close(self) -> None:
        """Drop the directory descriptor."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
