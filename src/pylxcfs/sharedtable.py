"""A table of fixed-size records in a memfd that every process of the daemon maps: per-container state that one
process writes and every other one must see (the loadavg history, views/loadavg.py).

Why: the kernel hands each FUSE request to whichever worker reads it first. State kept in one worker's heap
either pins every request that needs it to that worker (a round trip between workers per open, and one worker
doing all of that work while the others idle) or splits one container's history into one per worker. A memfd
that the supervisor creates and every worker inherits holds one history for all, and it outlives any single
worker: a replaced or reloaded worker finds the history where its predecessor left it.

Layout: a HEADER_SIZE header (magic, version, slot count, slot size; from USER_AT on, bytes that belong to the
table's user, e.g. the sampler's pass clock), then `nslots` slots of `slot_size` bytes each. A slot is a 16-byte
head (state FREE/LIVE/DELETED, key length, crc32 of the key), the key (at most `key_max` bytes), then the value
(`value_size` bytes, at the end of the slot). A key's slot is found by linear probing from crc32(key) % nslots;
a DELETED slot keeps a probe chain going and is reused by the next claim; compact() rebuilds the chains when
deleted slots pile up. The memory is sparse: only the pages of slots in use are ever touched (a scan visits the
memfd's written extents only, found with SEEK_DATA/SEEK_HOLE).

Concurrency: open-file-description record locks (fcntl F_OFD_SETLK) on the whole file, shared to read and
exclusive to write, plus a threading lock for the threads of one process. Each process locks through its own
open file description (a reopen of /proc/self/fd/N, redone after a fork): the workers inherit one description
of the memfd, and OFD locks on a shared description do not exclude each other. Not classic POSIX locks: those
belong to the process and vanish when it closes ANY descriptor of the file (mmap keeps a duplicate of its own,
closed with the mapping). The lock's system call is also the memory barrier a weakly ordered CPU (arm64, POWER)
needs between a writer's stores and a reader's loads: a lock-free sequence counter written from Python could be
torn there. Locks are tried without blocking and retried for at most LOCK_WAIT_S: a holder holds one only
across a few pack/unpack calls, never across I/O, and a stopped holder must not stop its peers (TableBusy,
after which the view serves the host file). The kernel drops a dead holder's locks with its descriptors.

The table trusts its peers (every process that maps it runs as root in this daemon); it checks its own header
and bounds, so a corrupt table raises ValueError or yields wrong figures, never a crash.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import stat
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Iterator

from pylxcfs.errors import PylxcfsError

MAGIC = 0x50595354  # "PYST"
VERSION = 1
HEADER_SIZE = 4096
USER_AT = 64  # header bytes [USER_AT, HEADER_SIZE) are the user's
DEFAULT_SLOTS = 8192  # containers one table holds; past that a view keeps its state in the process
DEFAULT_SLOT_SIZE = 1024
LOCK_WAIT_S = 0.05
LOCK_RETRY_S = 0.0002
FREE, LIVE, DELETED = 0, 1, 2
_HEADER = struct.Struct("=IIII")  # magic, version, nslots, slot_size
_HEAD = struct.Struct("=III4x")  # state, key length, crc32(key)
_HEAD_SIZE = _HEAD.size
_FLOCK = struct.Struct("@hhqqi4x")  # struct flock (64-bit off_t): l_type, l_whence, l_start, l_len, l_pid (0 for OFD)
_LOCK_ARGS = {kind: _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0) for kind in (fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK)}


class TableBusy(PylxcfsError):
    """The table's lock stayed taken for LOCK_WAIT_S (a peer stopped while holding it)."""

    def __init__(self) -> None:
        super().__init__(f"shared state table: lock still held by a peer after {LOCK_WAIT_S * 1000:.0f} ms")


def create(name: str, nslots: int = DEFAULT_SLOTS, slot_size: int = DEFAULT_SLOT_SIZE) -> int:
    """A new, empty table in a memfd (close-on-exec); returns its descriptor."""
    if nslots < 1 or slot_size < 2 * _HEAD_SIZE:
        raise ValueError(f"shared table {name}: bad geometry {nslots} x {slot_size}")
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, HEADER_SIZE + nslots * slot_size)
        os.pwrite(fd, _HEADER.pack(MAGIC, VERSION, nslots, slot_size), 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def is_table(fd: int) -> bool:
    """Whether `fd` is a regular file that starts with a table header of this version."""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.pread(fd, _HEADER.size, 0)
    except OSError:
        return False
    return len(head) == _HEADER.size and _HEADER.unpack(head)[:2] == (MAGIC, VERSION)


class SharedTable:
    """One process's mapping of a table; `value_size` is what its user stores per key."""

    def __init__(self, fd: int, value_size: int, owns_fd: bool = False) -> None:
        size = os.fstat(fd).st_size
        if size < HEADER_SIZE:
            raise ValueError(f"shared table on fd {fd}: {size} bytes, smaller than its header")
        magic, version, nslots, slot_size = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
        if magic != MAGIC or version != VERSION:
            raise ValueError(f"shared table on fd {fd}: magic {magic:#x} version {version}, not a pylxcfs table")
        if nslots < 1 or size != HEADER_SIZE + nslots * slot_size or slot_size < _HEAD_SIZE + value_size + 1:
            raise ValueError(f"shared table on fd {fd}: {nslots} slots of {slot_size} bytes do not fit {size} bytes "
                             f"and a {value_size}-byte value")
        self.fd = fd
        self.nslots: int = nslots
        self.slot_size: int = slot_size
        self.value_size = value_size
        self.key_max = slot_size - _HEAD_SIZE - value_size
        self.mm = mmap.mmap(fd, size)
        self._value_at = slot_size - value_size
        self._threads = threading.Lock()
        self._where: dict[bytes, int] = {}  # key -> slot it was last found in (checked on every use)
        self._lock_fd = -1  # this process's own open file description of the table, for its OFD locks
        self._lock_pid = 0
        self._lock_fds: list[int] = []  # the same, for the finalizer (a forked child swaps in its own)
        weakref.finalize(self, _close_all, self._lock_fds)
        if owns_fd:  # a private table: its descriptor goes with the object
            weakref.finalize(self, os.close, fd)

    # -- locking ------------------------------------------------------------------------------------------------
    def _own_description(self) -> int:
        pid = os.getpid()
        if self._lock_pid != pid:  # first use, or we are a forked child: the parent's description is shared
            fd = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
            # A forked child closes its copy of the parent's: that drops no lock (OFD locks follow the description,
            # which the parent keeps open).
            _close_all(self._lock_fds)
            self._lock_fds.append(fd)
            self._lock_fd, self._lock_pid = fd, pid
        return self._lock_fd

    def lock(self, exclusive: bool = False) -> None:
        """Take the table's lock (shared to read, exclusive to write); raises TableBusy. Pair with unlock()."""
        if not self._threads.acquire(timeout=LOCK_WAIT_S * 2):
            raise TableBusy
        try:
            fd = self._own_description()
        except BaseException:
            self._threads.release()
            raise
        arg = _LOCK_ARGS[fcntl.F_WRLCK if exclusive else fcntl.F_RDLCK]
        deadline = 0.0
        while True:
            try:
                fcntl.fcntl(fd, fcntl.F_OFD_SETLK, arg)
                return
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EINTR):
                    self._threads.release()
                    raise
            now = time.monotonic()
            if not deadline:
                deadline = now + LOCK_WAIT_S
            elif now >= deadline:
                self._threads.release()
                raise TableBusy
            time.sleep(LOCK_RETRY_S)

    def unlock(self) -> None:
        """Release what lock() took."""
        try:
            fcntl.fcntl(self._lock_fd, fcntl.F_OFD_SETLK, _LOCK_ARGS[fcntl.F_UNLCK])
        finally:
            self._threads.release()

    # -- slots (call with the lock held) ----------------------------------------------------------------------
    def _at(self, i: int) -> int:
        return HEADER_SIZE + i * self.slot_size

    def _holds(self, i: int, key: bytes, crc: int) -> bool:
        at = self._at(i)
        state, n, c = _HEAD.unpack_from(self.mm, at)
        return state == LIVE and n == len(key) and c == crc and self.mm[at + _HEAD_SIZE:at + _HEAD_SIZE + n] == key

    def find(self, key: bytes) -> int:
        """The slot holding `key`, or -1."""
        crc = zlib.crc32(key)
        i = self._where.get(key)
        if i is not None and self._holds(i, key, crc):
            return i
        i = crc % self.nslots
        for _ in range(self.nslots):
            at = self._at(i)
            state, n, c = _HEAD.unpack_from(self.mm, at)
            if state == FREE:
                break
            if state == LIVE and n == len(key) and c == crc and self.mm[at + _HEAD_SIZE:at + _HEAD_SIZE + n] == key:
                if len(self._where) >= 4 * self.nslots:
                    self._where.clear()
                self._where[key] = i
                return i
            i = (i + 1) % self.nslots
        return -1

    def claim(self, key: bytes, value: bytes) -> int:
        """The slot of `key`, made with `value` if it is new (exclusive lock); -1 if the table is full or the key
        longer than key_max."""
        i = self.find(key)
        if i >= 0:
            return i
        if len(key) > self.key_max or len(value) != self.value_size:
            return -1
        crc = zlib.crc32(key)
        i = crc % self.nslots
        for _ in range(self.nslots):
            at = self._at(i)
            state = _HEAD.unpack_from(self.mm, at)[0]
            if state != LIVE:
                self.mm[at + _HEAD_SIZE:at + _HEAD_SIZE + len(key)] = key
                self.mm[at + self._value_at:at + self.slot_size] = value
                _HEAD.pack_into(self.mm, at, LIVE, len(key), crc)  # last: a reader sees the slot whole or not at all
                self._where[key] = i
                return i
            i = (i + 1) % self.nslots
        return -1

    def value(self, i: int) -> bytes:
        """Slot i's value."""
        at = self._at(i) + self._value_at
        return self.mm[at:at + self.value_size]

    def set_value(self, i: int, value: bytes) -> None:
        """Overwrite slot i's value (exclusive lock)."""
        at = self._at(i) + self._value_at
        self.mm[at:at + self.value_size] = value

    def delete(self, i: int) -> None:
        """Free slot i (exclusive lock)."""
        _HEAD.pack_into(self.mm, self._at(i), DELETED, 0, 0)

    def _candidates(self) -> Iterator[int]:
        """The slots whose head lies in a page of the memfd that holds data. A page never written is a hole that
        reads as zeros, so every slot head in it is FREE; reading it through the mapping would make tmpfs allocate
        it (a scan of every head would make the whole table resident: 8 MiB at the default geometry). lseek's
        SEEK_DATA/SEEK_HOLE (tmpfs has them since Linux 3.8) name the written extents; our own open file
        description is used, as the shared one's file position belongs to every peer."""
        fd = self._own_description()
        size, off = HEADER_SIZE + self.nslots * self.slot_size, HEADER_SIZE
        ss = self.slot_size

        def first_from(at: int) -> int:  # the first slot whose head is at or after file offset `at`
            return (at - HEADER_SIZE + ss - 1) // ss

        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
                hole = os.lseek(fd, data, os.SEEK_HOLE)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data past `off`
                    return
                if e.errno != errno.EINVAL:
                    raise
                yield from range(first_from(off), self.nslots)  # no SEEK_DATA: every slot
                return
            yield from range(first_from(data), min(self.nslots, first_from(hole)))
            off = hole

    def live(self) -> list[tuple[int, bytes]]:
        """(slot, key) of every live slot."""
        out: list[tuple[int, bytes]] = []
        for i in self._candidates():
            at = self._at(i)
            state, n, _c = _HEAD.unpack_from(self.mm, at)
            if state == LIVE and n <= self.key_max:
                out.append((i, self.mm[at + _HEAD_SIZE:at + _HEAD_SIZE + n]))
        return out

    def deleted(self) -> int:
        """How many slots are DELETED (probe chains get longer with each)."""
        return sum(1 for i in self._candidates() if _HEAD.unpack_from(self.mm, self._at(i))[0] == DELETED)

    def compact(self) -> None:
        """Rebuild the probe chains without the DELETED slots (exclusive lock). Keys may move: every process
        checks a remembered slot before using it."""
        entries = [(key, self.value(i)) for i, key in self.live()]
        for i in list(self._candidates()):
            if _HEAD.unpack_from(self.mm, self._at(i))[0] != FREE:
                _HEAD.pack_into(self.mm, self._at(i), FREE, 0, 0)
        self._where.clear()
        for key, value in entries:
            self.claim(key, value)

    # -- the user's header bytes ------------------------------------------------------------------------------
    def user(self, fmt: struct.Struct) -> tuple[int, ...]:
        """The user's header fields (any lock)."""
        return fmt.unpack_from(self.mm, USER_AT)

    def set_user(self, fmt: struct.Struct, *values: int) -> None:
        """Write the user's header fields (exclusive lock)."""
        fmt.pack_into(self.mm, USER_AT, *values)

    def close(self) -> None:
        """Unmap (a descriptor passed in stays the caller's)."""
        self.mm.close()
