"""The raw-protocol worker: read a request from /dev/fuse, dispatch it to Operations, write the reply.

Role: one serving process of the raw backend. The supervisor (fuse/supervisor.py) mounted the
filesystem, answered INIT and handed us the /dev/fuse descriptor; we never mount, never negotiate
and never decide what files contain (ops.py and the Renderer do). Started as
`python -m pylxcfs.fuse.wire --fd N ...` so that a reload runs the code that is on disk now.

Several workers may read the same descriptor (during a reload the old and the new one do); the
kernel gives each request to exactly one reader. The descriptor is O_NONBLOCK (the supervisor sets
it), so a worker told to stop (SIGUSR2 or SIGTERM) notices it between requests: it never abandons a
request it has read, and exits after answering it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import select
import signal
import struct
import sys
import time
from collections.abc import Callable

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import FsError, Operations

log = logging.getLogger(__name__)

EXIT_CONNECTION_GONE = 10  # worker exit status: /dev/fuse said ENODEV (unmounted, aborted) or DESTROY came
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
        """Answer one request. Never raises: an unexpected exception becomes EIO plus a log line."""
        if not self.debug and len(buf) >= _HDR:
            # Same answers as the general path below, for the requests every reader sends (~2 us less each).
            _length, opcode, unique = _FAST_HEADER(buf)
            if opcode == _OP_READ and len(buf) >= _READ_MIN:
                nodeid, _uid, _gid, pid, fh, offset, size, read_flags = _FAST_READ(buf, 16)
                if read_flags & _READ_LOCKOWNER:  # else a page-cache fill: refused below
                    try:
                        out = self.ops.read(nodeid, fh, offset, size, pid)
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
        if h.opcode in P.NO_REPLY:  # FORGET, BATCH_FORGET: our inode table is static; INTERRUPT: we
            return None  # answer every request promptly anyway.
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


class StopFlag:
    """Set by SIGUSR2/SIGTERM; a self-pipe wakes a worker blocked in poll()."""

    def __init__(self) -> None:
        self.requested = False
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)

    def set(self) -> None:
        """Ask the loop to stop after the request it is answering."""
        self.requested = True
        with contextlib.suppress(BlockingIOError):
            os.write(self.wfd, b"x")

    def install(self, *signums: int) -> None:
        """Make these signals request a stop."""
        for s in signums:
            signal.signal(s, lambda _n, _f: self.set())


def write_reply(fd: int, out: bytes) -> bool:
    """Write one reply; False when the kernel no longer wants it (ENOENT: the request was interrupted or
    resent to another worker after FUSE_NOTIFY_RESEND)."""
    try:
        os.write(fd, out)
    except FileNotFoundError:
        return False
    return True


def serve(fd: int, dispatcher: Dispatcher, stop: StopFlag) -> str:
    """Answer requests on `fd` until told to stop or the filesystem goes away. Returns why it ended."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    poller.register(stop.rfd, select.POLLIN)
    bufsize = P.READ_BUFFER
    while not stop.requested:
        try:
            buf = os.read(fd, bufsize)
        except BlockingIOError:
            poller.poll()
            continue
        except OSError as e:
            if e.errno == errno.ENODEV:  # unmounted (or connection aborted)
                return "unmounted"
            if e.errno in (errno.ENOENT, errno.EINTR):  # request interrupted before we got it
                continue
            raise
        out = dispatcher.handle(buf)
        if out is not None:
            try:
                if not write_reply(fd, out) and dispatcher.last_opened is not None:
                    # The kernel dropped our OPEN reply (resent elsewhere): free the handle it carried.
                    dispatcher.ops.release(dispatcher.last_opened)
            except OSError as e:
                if e.errno == errno.ENODEV:
                    return "unmounted"
                raise
        if dispatcher.destroyed:
            return "destroyed"
    return "stopped"


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pylxcfs-worker", description="pylxcfs raw FUSE worker (started by the "
                                 "supervisor; not for direct use)")
    ap.add_argument("--fd", type=int, required=True, help="/dev/fuse descriptor, already initialised")
    ap.add_argument("--ready-fd", type=int, default=-1, help="write one byte here when ready to serve")
    ap.add_argument("--parent", type=int, default=0, help="supervisor pid (exit if it is gone)")
    ap.add_argument("--config", default="{}", help="JSON: host_root, opts, debug")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: build the Renderer, signal readiness, serve until told to stop."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    from pylxcfs import syscalls
    from pylxcfs.fuse.config import DaemonConfig
    from pylxcfs.log import setup_logging

    cfg = DaemonConfig.from_json(json.loads(args.config))
    setup_logging(cfg.debug, tag=f"worker[{os.getpid()}]")
    # Die with the supervisor: the connection must drop when it does, so the watchdog can unmount.
    syscalls.set_pdeathsig(signal.SIGKILL)
    if args.parent and os.getppid() != args.parent:
        log.error("supervisor %d is gone before we started", args.parent)
        return 1
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which tells us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = StopFlag()
    stop.install(signal.SIGUSR2, signal.SIGTERM)
    renderer = cfg.make_renderer()
    ops = Operations(renderer)
    renderer.stats.add_gauge("open_handles", ops.open_handles)  # published for `pylxcfs status` and the metrics
    dispatcher = Dispatcher(ops, debug=cfg.debug)
    renderer.start()
    if args.ready_fd >= 0:
        os.write(args.ready_fd, b"R")
        os.close(args.ready_fd)
    log.info("serving")
    try:
        why = serve(args.fd, dispatcher, stop)
    finally:
        renderer.close()
    log.info("exiting (%s) after %d requests", why, dispatcher.requests)
    # A distinct status tells the supervisor the connection itself is gone (someone unmounted us).
    return EXIT_CONNECTION_GONE if why in ("unmounted", "destroyed") else 0


if __name__ == "__main__":
    raise SystemExit(main())
