"""Tier 2: the worker's splice guard (no mount). A READ without FUSE_READ_LOCKOWNER is a page-cache fill (sendfile,
splice, MAP_PRIVATE mmap; fs/fuse/file.c fuse_read_folio/fuse_readahead send no lock owner) and must be refused with
EINVAL on BOTH dispatch paths (the perf fast path and the general one), while a read(2) READ (fuse_direct_io sets the
flag) is served. The real-kernel behaviour is proven in tests/t3_daemon/test_splice_isolation.py."""

from __future__ import annotations

import errno
import os
import struct

import pytest

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.ops import Operations, stable_ino
from pylxcfs.fuse.wire import Dispatcher

from .conftest import FakeRenderer, request, split_reply

MEMINFO = stable_ino("proc/meminfo")


def _open(d: Dispatcher) -> int:
    err, payload = split_reply(d.handle(request(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), MEMINFO, pid=77)))
    assert err == 0
    fh, open_flags, backing = P.OPEN_OUT.unpack(payload)
    # direct_io on every open, never keep_cache, never passthrough (one backing file per inode: see docs/design-fuse.md)
    assert open_flags == P.FOPEN_DIRECT_IO and backing == 0
    return int(fh)


def _read(d: Dispatcher, fh: int, read_flags: int, offset: int = 0, size: int = 4096) -> tuple[int, bytes]:
    body = P.READ_IN.pack(fh, offset, size, read_flags, 0xABCDEF if read_flags else 0, os.O_RDONLY, 0)
    return split_reply(d.handle(request(P.Opcode.READ, body, MEMINFO, pid=77)))


@pytest.mark.parametrize("debug", [False, True], ids=["fast-path", "general-path"])
def test_page_cache_read_is_refused_and_read2_is_served(debug: bool) -> None:
    r = FakeRenderer()
    d = Dispatcher(Operations(r), debug=debug)
    fh = _open(d)
    expected = r.render("proc/meminfo", 77)
    assert _read(d, fh, 0) == (-errno.EINVAL, b"")  # sendfile/splice/mmap fill
    assert _read(d, fh, 0, offset=4096) == (-errno.EINVAL, b"")
    # the refusal did not disturb the handle: read(2) renders for the reader at offset 0 and continues it
    assert _read(d, fh, P.FUSE_READ_LOCKOWNER) == (0, expected[:4096])
    assert _read(d, fh, P.FUSE_READ_LOCKOWNER, offset=4096) == (0, expected[4096:8192])
    assert len(r.calls) == 2  # our own render of the expectation and the read at 0: none for a refusal


def test_foreign_handle_page_cache_read_is_refused_too() -> None:
    # A handle opened through a previous worker: a page-cache fill must not make us render for it either.
    r = FakeRenderer()
    d = Dispatcher(Operations(r, salt=0x1111))
    foreign = (0x2222 << 32) | 5
    assert _read(d, foreign, 0) == (-errno.EINVAL, b"")
    assert r.calls == []
    err, data = _read(d, foreign, P.FUSE_READ_LOCKOWNER)
    assert err == 0 and data == r.render("proc/meminfo", 77)[:4096]


def test_lockowner_is_bit_one_of_read_flags() -> None:
    # include/uapi/linux/fuse.h: "#define FUSE_READ_LOCKOWNER (1 << 1)"; read_flags is the 4th field of fuse_read_in.
    assert P.FUSE_READ_LOCKOWNER == 2
    assert struct.unpack_from("=QQII", P.READ_IN.pack(1, 2, 3, P.FUSE_READ_LOCKOWNER, 0, 0, 0))[3] == 2
