"""Reading and appending to files a tenant or a stranger may have planted: engine state, a bundle's config.json,
registry records, the --log file.

Reads accept only regular files (a FIFO would block forever, a device could have side effects on open, a directory
or socket is nonsense), are bounded in size and in time (SIGALRM interrupts a read that blocks, e.g. on a file of a
stopped FUSE server), and JSON nested deeper than the parser allows is a clear error, never a RecursionError. The log
file is opened without following a symlink, must be a regular file owned by us, and is created 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
from collections.abc import Iterator
from typing import Any

from pylxcfs.errors import QuietError


class UnsafeFileError(QuietError):
    """A file that must not be used: not a regular file, too large, too slow, wrong owner, bad JSON."""


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def _deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise UnsafeFileError when the body takes longer than `seconds` (main thread only; elsewhere unbounded)."""
    def expired(_sig: int, _frame: object) -> None:
        raise UnsafeFileError(f"reading {what} took longer than {seconds:g}s")

    try:
        old = signal.signal(signal.SIGALRM, expired)
    except ValueError:  # not the main thread: no alarm available
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def read_regular(path: str, limit: int, timeout_s: float = 5.0, follow: bool = True) -> bytes:
    """The content of `path`, which must be a regular file of at most `limit` bytes, read within `timeout_s`.
    The type is checked on an O_PATH descriptor BEFORE anything is opened for reading (opening a FIFO blocks, opening
    a device runs its driver). Raises FileNotFoundError when it does not exist, UnsafeFileError otherwise."""
    with _deadline(timeout_s, path):
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
        try:
            st = os.fstat(pfd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(f"{path} is {kind_of(st.st_mode)}, not a regular file")
            if st.st_size > limit:
                raise UnsafeFileError(f"{path} is larger than {limit} bytes")
            fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        finally:
            os.close(pfd)
        try:
            chunks: list[bytes] = []
            total = 0
            while True:
                b = os.read(fd, 65536)
                if not b:
                    break
                total += len(b)
                if total > limit:
                    raise UnsafeFileError(f"{path} is larger than {limit} bytes")
                chunks.append(b)
        finally:
            os.close(fd)
    return b"".join(chunks)


def loads_json(text: str | bytes, what: str) -> Any:
    """json.loads with every failure as UnsafeFileError naming `what` (nesting too deep included)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UnsafeFileError(f"{what} is nested too deeply to be parsed") from None
    except ValueError as exc:
        raise UnsafeFileError(f"{what} is not valid JSON: {exc}") from None


def read_json(path: str, limit: int = 1 << 20, timeout_s: float = 5.0) -> Any:
    return loads_json(read_regular(path, limit, timeout_s), path)


def open_log(path: str) -> int:
    """An O_APPEND descriptor on `path` for log lines: created 0600 when missing; refused when it is a symlink,
    not a regular file, or not owned by us (a planted file or link would redirect what we write)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NOCTTY
    try:
        pfd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        st = os.fstat(pfd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"log file {path} is {kind_of(st.st_mode)}; refusing to write to it")
        if st.st_uid != os.geteuid():
            raise UnsafeFileError(f"log file {path} is owned by uid {st.st_uid}, not by us; refusing to write to it")
        # Reopened through the fd's magic link (which O_NOFOLLOW would refuse): the file checked is the one opened.
        fd = os.open(f"/proc/self/fd/{pfd}", flags & ~os.O_NOFOLLOW)
    finally:
        os.close(pfd)
    st2 = os.fstat(fd)
    if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):  # cannot happen through an fd, but say so if it does
        os.close(fd)
        raise UnsafeFileError(f"log file {path} changed while it was opened")
    return fd
