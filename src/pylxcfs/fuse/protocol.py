"""The FUSE kernel protocol (include/uapi/linux/fuse.h), as pure encode/decode functions.

Role: the byte layouts and numbers the raw backend (fuse/wire.py) and the supervisor
(fuse/supervisor.py) exchange with /dev/fuse. Everything here is pure: bytes in, typed records out,
and back. No I/O, no policy, no knowledge of what the files contain.

Only the subset a read-only pseudo-filesystem needs is modelled. Layouts follow fuse.h 7.40
(Linux 6.9); every struct we use has kept its layout since 7.23 (Linux 3.15), except `fuse_init_out`,
which only grew at its tail (the kernel accepts a shorter or longer reply: `out_argvar`).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

FUSE_KERNEL_VERSION = 7
# The highest minor we speak. 7.40 (Linux 6.9) added FUSE_HAS_RESEND and FUSE_NOTIFY_RESEND; nothing we
# send or receive changed layout between 7.36 (FUSE_INIT_EXT) and 7.40.
FUSE_KERNEL_MINOR_VERSION = 40
FUSE_ROOT_ID = 1
# The kernel refuses reads of /dev/fuse with a smaller buffer (fuse_dev_do_read).
FUSE_MIN_READ_BUFFER = 8192
# FUSE_UNIQUE_RESEND (fuse.h 7.40): set in `unique` of a request the kernel resent after
# FUSE_NOTIFY_RESEND. The reply must carry the unique exactly as received, so we only need it for logs.
FUSE_UNIQUE_RESEND = 1 << 63
# FUSE_INT_REQ_BIT: the low bit of an INTERRUPT request's unique (its reply carries it: fuse/wire.py).
FUSE_INT_REQ_BIT = 1


class Opcode(enum.IntEnum):
    """enum fuse_opcode."""

    LOOKUP = 1
    FORGET = 2  # no reply
    GETATTR = 3
    SETATTR = 4
    READLINK = 5
    SYMLINK = 6
    MKNOD = 8
    MKDIR = 9
    UNLINK = 10
    RMDIR = 11
    RENAME = 12
    LINK = 13
    OPEN = 14
    READ = 15
    WRITE = 16
    STATFS = 17
    RELEASE = 18
    FSYNC = 20
    SETXATTR = 21
    GETXATTR = 22
    LISTXATTR = 23
    REMOVEXATTR = 24
    FLUSH = 25
    INIT = 26
    OPENDIR = 27
    READDIR = 28
    RELEASEDIR = 29
    FSYNCDIR = 30
    GETLK = 31
    SETLK = 32
    SETLKW = 33
    ACCESS = 34
    CREATE = 35
    INTERRUPT = 36  # no reply
    BMAP = 37
    DESTROY = 38
    IOCTL = 39
    POLL = 40
    NOTIFY_REPLY = 41  # no reply
    BATCH_FORGET = 42  # no reply
    FALLOCATE = 43
    READDIRPLUS = 44
    RENAME2 = 45
    LSEEK = 46
    COPY_FILE_RANGE = 47
    SETUPMAPPING = 48
    REMOVEMAPPING = 49
    SYNCFS = 50
    TMPFILE = 51
    STATX = 52


NO_REPLY = frozenset({Opcode.FORGET, Opcode.BATCH_FORGET, Opcode.NOTIFY_REPLY})  # INTERRUPT: fuse/wire.py


class NotifyCode(enum.IntEnum):
    """enum fuse_notify_code (server -> kernel messages: out header with unique 0, error = code)."""

    POLL = 1
    INVAL_INODE = 2
    INVAL_ENTRY = 3
    STORE = 4
    RETRIEVE = 5
    DELETE = 6
    RESEND = 7  # Linux >= 6.9: move every request a server took but did not answer back to pending


# INIT flags (fuse_init_in/out.flags, and flags2 = bits 32..63 when FUSE_INIT_EXT is set).
FUSE_ASYNC_READ = 1 << 0
FUSE_BIG_WRITES = 1 << 5
FUSE_DO_READDIRPLUS = 1 << 13
FUSE_WRITEBACK_CACHE = 1 << 16
FUSE_PARALLEL_DIROPS = 1 << 18
FUSE_MAX_PAGES = 1 << 22
FUSE_INIT_EXT = 1 << 30
FUSE_HAS_RESEND = 1 << 39

# fuse_read_in.read_flags. FUSE_READ_LOCKOWNER tells a read(2) through a FOPEN_DIRECT_IO file (fs/fuse/file.c
# fuse_direct_io passes owner = current->files to fuse_send_read, which sets it) from a page-cache fill
# (fuse_read_folio, fuse_readahead: no owner, read_flags 0), which is what sendfile(2)/splice(2) cause since Linux
# 6.5 (fuse_splice_read -> filemap_splice_read, even for FOPEN_DIRECT_IO files) and MAP_PRIVATE mmap faults.
# See Dispatcher._read.
FUSE_READ_LOCKOWNER = 1 << 1

# fuse_open_out.open_flags
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_NONSEEKABLE = 1 << 2

# struct layouts ("=": native byte order, standard sizes, no implicit padding; fuse.h pads explicitly)
IN_HEADER = struct.Struct("=IIQQIIIHH")  # len opcode unique nodeid uid gid pid total_extlen padding
OUT_HEADER = struct.Struct("=IiQ")  # len error unique
INIT_IN = struct.Struct("=IIII")  # major minor max_readahead flags (+ flags2 from 7.36)
INIT_IN_FLAGS2 = struct.Struct("=I")
# major minor max_readahead flags max_background congestion_threshold max_write time_gran max_pages
# map_alignment flags2 max_stack_depth request_timeout unused[11]
INIT_OUT = struct.Struct("=IIIIHHIIHHIIH22x")
# ino size blocks atime mtime ctime atimensec mtimensec ctimensec mode nlink uid gid rdev blksize flags
ATTR = struct.Struct("=QQQQQQIIIIIIIIII")
ENTRY_OUT = struct.Struct("=QQQQII")  # nodeid generation entry_valid attr_valid entry_valid_nsec attr_valid_nsec
ATTR_OUT = struct.Struct("=QII")  # attr_valid attr_valid_nsec dummy
GETATTR_IN = struct.Struct("=IIQ")  # getattr_flags dummy fh
OPEN_IN = struct.Struct("=II")  # flags open_flags
OPEN_OUT = struct.Struct("=QIi")  # fh open_flags backing_id
READ_IN = struct.Struct("=QQIIQII")  # fh offset size read_flags lock_owner flags padding
RELEASE_IN = struct.Struct("=QIIQ")  # fh flags release_flags lock_owner
ACCESS_IN = struct.Struct("=II")  # mask padding
FORGET_ONE = struct.Struct("=QQ")  # nodeid nlookup
BATCH_FORGET_IN = struct.Struct("=II")  # count dummy
KSTATFS = struct.Struct("=QQQQQIIII24x")  # blocks bfree bavail files ffree bsize namelen frsize padding spare[6]
DIRENT = struct.Struct("=QQII")  # ino off namelen type, then the name padded to 8 bytes
INTERRUPT_IN = struct.Struct("=Q")

assert IN_HEADER.size == 40 and OUT_HEADER.size == 16 and INIT_OUT.size == 64 and ATTR.size == 88
assert KSTATFS.size == 80 and READ_IN.size == 40


@dataclass(frozen=True, slots=True)
class InHeader:
    """struct fuse_in_header. `pid` is the caller's thread id in the daemon's pid namespace (0: invisible)."""

    length: int
    opcode: int
    unique: int
    nodeid: int
    uid: int
    gid: int
    pid: int


def decode_header(buf: bytes) -> InHeader:
    """Decode the 40-byte request header. Raises ValueError on a short buffer."""
    if len(buf) < IN_HEADER.size:
        raise ValueError(f"short FUSE request: {len(buf)} bytes")
    length, opcode, unique, nodeid, uid, gid, pid, _ext, _pad = IN_HEADER.unpack_from(buf)
    return InHeader(length, opcode, unique, nodeid, uid, gid, pid)


def reply(unique: int, payload: bytes = b"") -> bytes:
    """A successful reply to request `unique`."""
    return OUT_HEADER.pack(OUT_HEADER.size + len(payload), 0, unique) + payload


def reply_error(unique: int, errno_: int) -> bytes:
    """An error reply (the kernel wants the negated errno)."""
    return OUT_HEADER.pack(OUT_HEADER.size, -abs(errno_), unique)


def notify(code: NotifyCode, payload: bytes = b"") -> bytes:
    """A notification: unique 0, the code in the error field."""
    return OUT_HEADER.pack(OUT_HEADER.size + len(payload), int(code), 0) + payload


@dataclass(frozen=True, slots=True)
class Attr:
    """What getattr reports for one node (times are filled at encode time)."""

    ino: int
    mode: int  # S_IFDIR|0o555 or S_IFREG|0o444
    nlink: int
    size: int = 0


def encode_attr(a: Attr, now_s: int, now_ns: int) -> bytes:
    """struct fuse_attr; uid/gid 0, times = now (as lxcfs does), blksize 4096."""
    return ATTR.pack(a.ino, a.size, 0, now_s, now_s, now_s, now_ns, now_ns, now_ns, a.mode, a.nlink, 0, 0, 0,
                     4096, 0)


def split_timeout(seconds: float) -> tuple[int, int]:
    """A timeout as (seconds, nanoseconds), the way fuse_entry_out and fuse_attr_out carry it."""
    whole = int(seconds)
    return whole, round((seconds - whole) * 1e9)


def encode_entry(a: Attr, timeout_s: float, now_s: int, now_ns: int) -> bytes:
    """struct fuse_entry_out for a LOOKUP reply (generation 0: inode numbers are never reused)."""
    sec, nsec = split_timeout(timeout_s)
    return ENTRY_OUT.pack(a.ino, 0, sec, sec, nsec, nsec) + encode_attr(a, now_s, now_ns)


def encode_attr_out(a: Attr, timeout_s: float, now_s: int, now_ns: int) -> bytes:
    """struct fuse_attr_out for a GETATTR reply."""
    sec, nsec = split_timeout(timeout_s)
    return ATTR_OUT.pack(sec, nsec, 0) + encode_attr(a, now_s, now_ns)


def encode_open(fh: int, open_flags: int) -> bytes:
    """struct fuse_open_out."""
    return OPEN_OUT.pack(fh, open_flags, 0)


def encode_dirent(ino: int, next_off: int, dtype: int, name: bytes) -> bytes:
    """One struct fuse_dirent, padded to 8 bytes. `next_off` is the offset of the entry after this one."""
    rec = DIRENT.pack(ino, next_off, len(name), dtype) + name
    return rec + b"\0" * (-len(rec) % 8)


def encode_statfs(namelen: int = 255, bsize: int = 512) -> bytes:
    """struct fuse_statfs_out: an empty filesystem (what libfuse answers when statfs is unimplemented)."""
    return KSTATFS.pack(0, 0, 0, 0, 0, bsize, namelen, bsize, 0)


@dataclass(frozen=True, slots=True)
class InitIn:
    """struct fuse_init_in, with flags and flags2 merged into one 64-bit field."""

    major: int
    minor: int
    max_readahead: int
    flags: int


def decode_init(body: bytes) -> InitIn:
    """Decode the INIT request body (after the header)."""
    major, minor, max_readahead, flags = INIT_IN.unpack_from(body)
    if flags & FUSE_INIT_EXT and len(body) >= INIT_IN.size + INIT_IN_FLAGS2.size:
        (flags2,) = INIT_IN_FLAGS2.unpack_from(body, INIT_IN.size)
        flags |= flags2 << 32
    return InitIn(major, minor, max_readahead, flags)


@dataclass(frozen=True, slots=True)
class InitResult:
    """What we agreed with the kernel."""

    minor: int
    flags: int  # the flags we replied with
    kernel_flags: int  # what the kernel offered
    max_write: int

    @property
    def kernel_can_resend(self) -> bool:
        """FUSE_HAS_RESEND: the kernel understands FUSE_NOTIFY_RESEND (Linux >= 6.9)."""
        return bool(self.kernel_flags & FUSE_HAS_RESEND)


# What we ask for: nothing that caches data (no FUSE_WRITEBACK_CACHE, no FUSE_AUTO_INVAL_DATA: content
# differs per caller, design.md §3.5), no READDIRPLUS (plain READDIR keeps every LOOKUP visible to us).
# FUSE_PARALLEL_DIROPS (libfuse asks for it by default, so C lxcfs has it): without it the kernel holds the
# directory's lock across each LOOKUP and READDIR (fs/fuse/dir.c fuse_lock_inode), so every container's lookups
# in proc/ or sys/devices/system/cpu/ (cpuN entries are revalidated on every walk) would wait for one another,
# and one slow lookup would stall them all, whatever the size of the pool. Ours share no state that needs it.
_WANTED = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT | FUSE_PARALLEL_DIROPS
MAX_PAGES = 32  # 128 KiB per READ request with 4 KiB pages: the kernel default
MAX_WRITE = 128 * 1024
# A read buffer large enough for the largest request the kernel may send us: a WRITE of max_write bytes
# plus headers (fuse_dev_do_read refuses smaller buffers with EINVAL).
READ_BUFFER = MAX_WRITE + 4096


def negotiate_init(init: InitIn) -> tuple[bytes, InitResult | None]:
    """The INIT reply body for the kernel's INIT, and the agreement (None: wait for another INIT).

    Version rules from fuse.h: same major -> both use the smaller minor; a kernel with a larger major
    gets our major and sends INIT again; an older major (< 7) is unsupported.
    """
    if init.major > FUSE_KERNEL_VERSION:
        return INIT_OUT.pack(FUSE_KERNEL_VERSION, FUSE_KERNEL_MINOR_VERSION, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), None
    if init.major < FUSE_KERNEL_VERSION:
        raise ValueError(f"unsupported FUSE protocol {init.major}.{init.minor}")
    minor = min(init.minor, FUSE_KERNEL_MINOR_VERSION)
    flags = init.flags & _WANTED
    # max_readahead 0: readahead only ever fills the inode's page cache, which the workers refuse to fill (page-cache
    # READs get EINVAL, see wire.Dispatcher._read); 0 spares a sendfile reader the refused async readahead request.
    body = INIT_OUT.pack(FUSE_KERNEL_VERSION, minor, 0, flags & 0xFFFFFFFF, 16, 12, MAX_WRITE, 1,
                         MAX_PAGES, 0, flags >> 32, 0, 0)
    if minor < 23:
        body = body[:24]  # FUSE_COMPAT_22_INIT_OUT_SIZE
    return body, InitResult(minor=minor, flags=flags, kernel_flags=init.flags, max_write=MAX_WRITE)
