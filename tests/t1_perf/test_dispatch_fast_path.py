"""The raw worker's fast path (fuse/wire.py Dispatcher.handle for READ, RELEASE, FLUSH) answers byte for byte
what the general path answers: the general path is the same Dispatcher with debug on (which always takes it),
fed the same request sequence over two Operations with the same handle salt and content. Includes the cases
the fast path must hand over: foreign handles, short (malformed) bodies, reads past the end."""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import Operations, stable_ino
from pylxcfs.fuse.wire import Dispatcher
from pylxcfs.hosttree import HostTree

MEMINFO = stable_ino("proc/meminfo")


class Content:
    """Caller-dependent content, long enough to need several reads."""

    def paths(self) -> tuple[str, ...]:
        return ("proc/meminfo", "proc/stat")

    def tree_paths(self) -> tuple[str, ...]:
        return ()  # no directory views here

    def host_tree(self, tree: str) -> HostTree:
        raise KeyError(tree)

    def hidden(self, tree: str, caller_pid: int, names: Iterable[str]) -> frozenset[str]:
        return frozenset()

    def host_bytes(self, path: str) -> bytes:
        return b"host\n"

    def render(self, path: str, caller_pid: int) -> bytes:
        return "".join(f"{path} line {i} for pid {caller_pid}\n" for i in range(300)).encode()


def req(opcode: int, body: bytes, unique: int, nodeid: int = MEMINFO, pid: int = 4242) -> bytes:
    return P.IN_HEADER.pack(P.IN_HEADER.size + len(body), opcode, unique, nodeid, 0, 0, pid, 0, 0) + body


def read_body(fh: int, off: int, size: int) -> bytes:
    return P.READ_IN.pack(fh, off, size, P.FUSE_READ_LOCKOWNER, 0, 0, 0)  # a read(2) (fuse_direct_io)


def test_fast_path_answers_like_the_general_path() -> None:
    fast = Dispatcher(Operations(Content(), salt=0x1234), debug=False)
    slow = Dispatcher(Operations(Content(), salt=0x1234), debug=True)
    seq: list[bytes] = []
    u = 1
    # open twice (two handles), read both in pieces and past the end, flush, release; then a foreign handle
    opens = []
    for pid in (100, 200):
        r = req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), u, pid=pid)
        u += 1
        a, b = fast.handle(r), slow.handle(r)
        assert a == b and a is not None
        opens.append(P.OPEN_OUT.unpack_from(a, 16)[0])
    total = len(Content().render("proc/meminfo", 100))
    for fh in opens:
        for off, size in ((0, 4096), (4096, 4096), (0, 65536), (total - 10, 4096), (total, 4096), (total + 99, 1),
                          (5, 0)):
            seq.append(req(P.Opcode.READ, read_body(fh, off, size), u))
            u += 1
    foreign = (0x9999 << 32) | 5
    seq += [
        req(P.Opcode.READ, read_body(foreign, 0, 100), u, pid=300),  # foreign: rendered for the reader
        req(P.Opcode.READ, read_body(foreign, 100, 100), u + 1, pid=300),
        req(P.Opcode.READ, read_body(opens[0], 0, 100)[:20], u + 2),  # short body: EIO on both paths
        req(P.Opcode.RELEASE, P.RELEASE_IN.pack(opens[0], 0, 0, 0)[:4], u + 3),  # short body
        req(P.Opcode.FLUSH, struct.pack("=QIIQ", opens[0], 0, 0, 0), u + 4),
        req(P.Opcode.RELEASE, P.RELEASE_IN.pack(opens[0], 0, 0, 0), u + 5),
        req(P.Opcode.READ, read_body(opens[0], 0, 100), u + 6),  # released: now unknown -> rendered again
        req(P.Opcode.RELEASE, P.RELEASE_IN.pack(foreign, 0, 0, 0), u + 7),
        req(P.Opcode.RELEASE, P.RELEASE_IN.pack(12345, 0, 0, 0), u + 8),  # unknown handle: ignored
        req(P.Opcode.READ, read_body(opens[1], 0, 100), u + 9, nodeid=stable_ino("proc")),  # a directory ino
        # a page-cache fill (no FUSE_READ_LOCKOWNER: sendfile/splice/mmap) of an own handle: general path's answer
        req(P.Opcode.READ, P.READ_IN.pack(opens[1], 0, 4096, 0, 0, 0, 0), u + 10),
        # refused opens (answered by the general path) and a short OPEN body
        req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_WRONLY, 0), u + 11),
        req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY | os.O_TRUNC, 0), u + 12),
        req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), u + 13, nodeid=stable_ino("proc")),
        req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), u + 14, nodeid=424242),
        req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0)[:4], u + 15),
        req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY | os.O_CLOEXEC, 0), u + 16, pid=777),
        # offset 0 re-renders for the reader (another pid), later offsets continue that render
        req(P.Opcode.READ, read_body(opens[1], 0, 100), u + 17, pid=999),
        req(P.Opcode.READ, read_body(opens[1], 50, 100), u + 18, pid=4242),
        req(P.Opcode.READ, read_body(opens[1], 0, 100), u + 19, nodeid=424242),  # unknown inode at 0: ENOENT
        req(P.Opcode.READ, read_body(opens[1], -1 & 0xFFFFFFFFFFFFFFFF, 100), u + 20),  # huge offset: EOF
    ]
    for r in seq:
        a, b = fast.handle(r), slow.handle(r)
        assert a == b, (P.IN_HEADER.unpack_from(r), a[:40] if a else a, b[:40] if b else b)
        assert fast.last_opened == slow.last_opened
    assert fast.requests == slow.requests
    assert fast.ops.open_handles() == slow.ops.open_handles()


def test_flush_is_enosys_and_release_frees_the_handle() -> None:
    d = Dispatcher(Operations(Content()))
    out = d.handle(req(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), 1))
    assert out is not None
    fh = P.OPEN_OUT.unpack_from(out, 16)[0]
    flush = d.handle(req(P.Opcode.FLUSH, struct.pack("=QIIQ", fh, 0, 0, 0), 2))
    assert flush == P.OUT_HEADER.pack(16, -errno.ENOSYS, 2)
    assert d.ops.open_handles() == 1
    assert d.handle(req(P.Opcode.RELEASE, P.RELEASE_IN.pack(fh, 0, 0, 0), 3)) == P.OUT_HEADER.pack(16, 0, 3)
    assert d.ops.open_handles() == 0
