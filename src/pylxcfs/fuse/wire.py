"""The raw protocol's request dispatcher: one request read from /dev/fuse in, one reply to write out.

Role: turns bytes into calls on ops.Operations and their results (or FsError) into reply bytes; it never
reads or writes the device itself and never decides what files contain (ops.py and the Renderer do). The
process that owns the descriptor and runs the loop is fuse/worker.py.
"""

from __future__ import annotations

import errno
import logging
import struct
import time
from collections.abc import Callable

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import FsError, Operations, Referred

log = logging.getLogger(__name__)

ENTRY_TIMEOUT_S = 0.5  # lxcfs's entry_timeout/attr_timeout; 0 costs 13-35% (fuse-bindings.md §4d)
ATTR_TIMEOUT_S = 0.5

# Operations that change the tree or file contents. virtual-files.md §3.5: lxcfs answers EPERM for
# mkdir/rmdir/chmod/chown/truncate (SETATTR) and ENOSYS for the rest; our files are never writable.
_EPERM_OPS = frozenset({P.Opcode.SETATTR, P.Opcode.MKDIR, P.Opcode.RMDIR})
_ENOSYS_OPS = frozenset({P.Opcode.SYMLINK, P.Opcode.MKNOD, P.Opcode.UNLINK, P.Opcode.RENAME, P.Opcode.LINK,
                         P.Opcode.CREATE, P.Opcode.RENAME2, P.Opcode.TMPFILE, P.Opcode.SETXATTR,
                         P.Opcode.GETXATTR, P.Opcode.LISTXATTR, P.Opcode.REMOVEXATTR})


# Fast path of Dispatcher.handle: a reader's open() costs 4 requests (OPEN, READ, READ at EOF, RELEASE; FLUSH is
# answered ENOSYS once and then never sent again); they are answered from the raw bytes, without building an InHeader.
_FAST_HEADER = struct.Struct("=IIQ").unpack_from  # len opcode unique (fuse_in_header's head)
# fuse_in_header's nodeid uid gid pid (total_extlen, padding skipped), then fuse_read_in's fh offset size read_flags
_FAST_READ = struct.Struct("=QIII4xQQII").unpack_from
_FAST_FH = struct.Struct("=Q").unpack_from  # fuse_release_in: fh
_FAST_OUT = P.OUT_HEADER.pack
_FAST_OPEN = struct.Struct("=QIII4xI").unpack_from  # fuse_in_header's nodeid uid gid pid, fuse_open_in.flags
_HDR = P.IN_HEADER.size
_READ_MIN = _HDR + P.READ_IN.size
_RELEASE_MIN = _HDR + P.RELEASE_IN.size
_OPEN_MIN = _HDR + P.OPEN_IN.size
# Plain ints: comparing with an IntEnum member costs an attribute lookup through the enum class each time.
_OP_OPEN, _OP_READ, _OP_RELEASE, _OP_FLUSH = (int(P.Opcode.OPEN), int(P.Opcode.READ), int(P.Opcode.RELEASE),
                                               int(P.Opcode.FLUSH))
_READ_LOCKOWNER = P.FUSE_READ_LOCKOWNER
_OPEN_REPLY = struct.Struct("=IiQQIi").pack  # out header + fuse_open_out (fh, open_flags, backing_id)
_OPEN_REPLY_LEN = P.OUT_HEADER.size + P.OPEN_OUT.size


class Dispatcher:
    """Turns one request (bytes read from /dev/fuse) into one reply (bytes to write), or None."""

    def __init__(self, ops: Operations, debug: bool = False) -> None:
        self.ops = ops
        self.debug = debug
        self.requests = 0
        self.errors = 0
        self.destroyed = False
        self.last_opened: int | None = None  # the handle created by the request just answered, if any
        self.referred = False  # the request just handled was not answered: it belongs to its handle's owner
        self._handlers: dict[int, Callable[[P.InHeader, memoryview], bytes]] = {
            P.Opcode.LOOKUP: self._lookup,
            P.Opcode.GETATTR: self._getattr,
            P.Opcode.READLINK: self._readlink,
            P.Opcode.OPEN: self._open,
            P.Opcode.READ: self._read,
            P.Opcode.RELEASE: self._release,
            P.Opcode.FLUSH: self._flush,
            P.Opcode.FSYNC: self._ok,
            P.Opcode.OPENDIR: self._opendir,
            P.Opcode.READDIR: self._readdir,
            P.Opcode.RELEASEDIR: self._ok,
            P.Opcode.FSYNCDIR: self._ok,
            P.Opcode.STATFS: self._statfs,
            P.Opcode.ACCESS: self._access,
            P.Opcode.DESTROY: self._destroy,
            P.Opcode.WRITE: self._write,
        }

    def handle(self, buf: bytes) -> bytes | None:
        """Answer one request. Never raises: an unexpected exception becomes EIO plus a log line. None: no reply
        (FORGET and the like), or `referred` is set: the request is its handle owner's to answer (ops.Referred)."""
        self.referred = False
        if not self.debug and len(buf) >= _HDR:
            # Same answers as the general path below, for the requests every reader sends (~2 us less each).
            _length, opcode, unique = _FAST_HEADER(buf)
            if opcode == _OP_READ and len(buf) >= _READ_MIN:
                nodeid, _uid, _gid, pid, fh, offset, size, read_flags = _FAST_READ(buf, 16)
                if read_flags & _READ_LOCKOWNER:  # else a page-cache fill: refused below
                    try:
                        out = self.ops.read(nodeid, fh, offset, size, pid)
                    except Referred:
                        self.referred = True
                        return None
                    except Exception:  # refusals and failures are answered (and logged) by the general path
                        pass
                    else:
                        self.requests += 1
                        self.last_opened = None
                        return _FAST_OUT(16 + len(out), 0, unique) + out
            elif opcode == _OP_OPEN and len(buf) >= _OPEN_MIN:
                nodeid, _uid, _gid, pid, flags = _FAST_OPEN(buf, 16)
                try:
                    fh = self.ops.open(nodeid, flags, pid)
                except Exception:  # refusals (EACCES, EISDIR, ENOENT) are answered and logged below
                    pass
                else:
                    self.requests += 1
                    self.last_opened = fh
                    return _OPEN_REPLY(_OPEN_REPLY_LEN, 0, unique, fh, P.FOPEN_DIRECT_IO, 0)
            elif opcode == _OP_RELEASE and len(buf) >= _RELEASE_MIN:
                self.requests += 1
                self.last_opened = None
                self.ops.release(_FAST_FH(buf, _HDR)[0])
                return _FAST_OUT(16, 0, unique)
            elif opcode == _OP_FLUSH:
                self.requests += 1
                self.last_opened = None
                return _FAST_OUT(16, -errno.ENOSYS, unique)
        h = P.decode_header(buf)
        self.requests += 1
        self.last_opened = None
        if h.opcode == P.Opcode.INTERRUPT:
            # ENOSYS, as libfuse's no_interrupt option answers: the kernel sets fc->no_interrupt and never sends an
            # INTERRUPT again (fs/fuse/dev.c fuse_dev_do_write); a signalled reader then simply waits for its answer
            # (killable, request_wait_answer), which comes promptly. Interrupting a render could only make a reader
            # see EINTR for a read that was about to succeed, and each INTERRUPT is one more request on the queue
            # during a flood. (The kernel ignores this reply if the interrupted request was answered first: ENOENT.)
            if self.debug:
                log.debug("INTERRUPT of unique %#x: answered ENOSYS (the kernel stops sending them)",
                          P.INTERRUPT_IN.unpack_from(buf, P.IN_HEADER.size)[0] if h.length >= 48 else 0)
            return P.reply_error(h.unique, errno.ENOSYS)
        if h.opcode in P.NO_REPLY:  # FORGET, BATCH_FORGET: our inode table is static
            return None
        body = memoryview(buf)[P.IN_HEADER.size:h.length]
        fn = self._handlers.get(h.opcode)
        try:
            if fn is None:
                if h.opcode in _EPERM_OPS:
                    raise FsError(errno.EPERM, f"opcode {h.opcode}")
                if h.opcode == P.Opcode.INIT:
                    # INIT belongs to the supervisor; seeing it here means a misconfigured start.
                    raise FsError(errno.EPROTO, "INIT reached a worker")
                raise FsError(errno.ENOSYS, f"opcode {h.opcode}")
            out = fn(h, body)
        except Referred:
            self.referred = True
            return None
        except FsError as e:
            if self.debug:
                log.debug("op %d ino %d pid %d -> %s", h.opcode, h.nodeid, h.pid, e)
            return P.reply_error(h.unique, e.errno)
        except Exception:  # design.md §3.6: an exception becomes an errno and a log line, never a dead fs
            self.errors += 1
            log.exception("op %d ino %d pid %d failed", h.opcode, h.nodeid, h.pid)
            return P.reply_error(h.unique, errno.EIO)
        if self.debug:
            log.debug("op %d ino %d pid %d unique %#x -> %d bytes", h.opcode, h.nodeid, h.pid, h.unique, len(out))
        return P.reply(h.unique, out)

    # -- handlers: (header, body) -> reply payload -------------------------------------------------
    @staticmethod
    def _now() -> tuple[int, int]:
        ns = time.time_ns()
        return ns // 1_000_000_000, ns % 1_000_000_000

    def _lookup(self, h: P.InHeader, body: memoryview) -> bytes:
        name = bytes(body).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        a = self.ops.lookup(h.nodeid, name, h.pid)
        # An entry whose existence depends on the caller (a cpuN directory of /sys/devices/system/cpu) must not be
        # cached: the kernel keeps one dentry for every caller of this superblock. Timeout 0 makes each path walk
        # revalidate it with a LOOKUP carrying that walker's pid (fs/fuse/dir.c fuse_dentry_revalidate); our
        # ENOENT for a caller that must not see it leaves no negative dentry behind (fuse_lookup invalidates it).
        timeout = 0.0 if self.ops.per_caller(a.ino) else ENTRY_TIMEOUT_S
        return P.encode_entry(a, timeout, *self._now())

    def _readlink(self, h: P.InHeader, body: memoryview) -> bytes:
        return self.ops.readlink(h.nodeid).encode("utf-8", "surrogateescape")

    def _getattr(self, h: P.InHeader, body: memoryview) -> bytes:
        return P.encode_attr_out(self.ops.getattr(h.nodeid), ATTR_TIMEOUT_S, *self._now())

    def _open(self, h: P.InHeader, body: memoryview) -> bytes:
        flags, _open_flags = P.OPEN_IN.unpack_from(body)
        fh = self.ops.open(h.nodeid, flags, h.pid)
        self.last_opened = fh
        # direct_io on every open, keep_cache never: one inode shows different bytes to each container.
        return P.encode_open(fh, P.FOPEN_DIRECT_IO)

    def _read(self, h: P.InHeader, body: memoryview) -> bytes:
        fh, offset, size, read_flags, *_ = P.READ_IN.unpack_from(body)
        if not read_flags & P.FUSE_READ_LOCKOWNER:
            # A page-cache fill, not a read(2): since Linux 6.5 sendfile(2)/splice(2) on a FOPEN_DIRECT_IO file go
            # through filemap_splice_read (fs/fuse/file.c fuse_splice_read), i.e. through the ONE page cache and
            # i_size of the inode, which every container's bind mount of this file shares. Filling it would let
            # another container's concurrent sendfile read these bytes (measured: 5-10% of busybox `cat` reads
            # showed the other container's MemTotal) and a short content would shrink i_size for everyone. Refused,
            # the cache stays empty: sendfile fails with EINVAL ("in_fd does not support this", sendfile(2)) and
            # busybox cat, Python's shutil and coreutils fall back to read(2), which is served per open below.
            # read(2) READs always carry FUSE_READ_LOCKOWNER (fuse_direct_io: owner = current->files).
            raise FsError(errno.EINVAL, "page-cache read (sendfile/splice/mmap) refused")
        return self.ops.read(h.nodeid, fh, offset, size, h.pid)

    def _release(self, h: P.InHeader, body: memoryview) -> bytes:
        fh, *_ = P.RELEASE_IN.unpack_from(body)
        self.ops.release(fh)
        return b""

    def _ok(self, h: P.InHeader, body: memoryview) -> bytes:
        return b""

    def _flush(self, h: P.InHeader, body: memoryview) -> bytes:
        # ENOSYS, not 0: the kernel then sets fc->no_flush and never sends FLUSH again (fs/fuse/file.c
        # fuse_flush; libfuse answers the same for a filesystem without a flush op), and close() returns 0
        # either way. We have nothing to flush; this saves one of the five round trips of every open().
        raise FsError(errno.ENOSYS, "flush")

    def _write(self, h: P.InHeader, body: memoryview) -> bytes:
        raise FsError(errno.EINVAL, "write")  # lxcfs: write to /proc files -> EINVAL (write opens fail first)

    def _opendir(self, h: P.InHeader, body: memoryview) -> bytes:
        return P.encode_open(self.ops.opendir(h.nodeid), 0)

    def _readdir(self, h: P.InHeader, body: memoryview) -> bytes:
        _fh, offset, size, *_ = P.READ_IN.unpack_from(body)
        out = bytearray()
        for name, ino, dtype, next_off in self.ops.readdir(h.nodeid, offset, h.pid):
            rec = P.encode_dirent(ino, next_off, dtype, name.encode())
            if len(out) + len(rec) > size:
                break
            out += rec
        return bytes(out)

    def _statfs(self, h: P.InHeader, body: memoryview) -> bytes:
        return P.encode_statfs()

    def _access(self, h: P.InHeader, body: memoryview) -> bytes:
        mask, _ = P.ACCESS_IN.unpack_from(body)
        self.ops.access(h.nodeid, mask)
        return b""

    def _destroy(self, h: P.InHeader, body: memoryview) -> bytes:
        self.destroyed = True
        return b""
