"""Tier 2: the FUSE wire format (fuse/protocol.py), checked against the sizes and numbers of
include/uapi/linux/fuse.h, independent of our own encoders where possible."""

from __future__ import annotations

import struct

import pytest

from pylxcfs.fuse import protocol as P


def test_struct_sizes_match_fuse_h() -> None:
    # Sizes from fuse.h: in_header 40, out_header 16, fuse_attr 88, entry_out 40+88, attr_out 16+88,
    # open_out 16, read_in 40, release_in 24, init_out 64 (7.36+), kstatfs 80.
    assert P.IN_HEADER.size == 40
    assert P.OUT_HEADER.size == 16
    assert P.ATTR.size == 88
    assert P.ENTRY_OUT.size + P.ATTR.size == 128
    assert P.ATTR_OUT.size + P.ATTR.size == 104
    assert P.OPEN_OUT.size == 16
    assert P.READ_IN.size == 40
    assert P.RELEASE_IN.size == 24
    assert P.INIT_OUT.size == 64
    assert P.KSTATFS.size == 80


def test_decode_header_fields() -> None:
    raw = struct.pack("=IIQQIIIHH", 56, 15, 1 << 63 | 9, 77, 1000, 1001, 4321, 0, 0) + b"x" * 16
    h = P.decode_header(raw)
    assert (h.length, h.opcode, h.unique, h.nodeid, h.uid, h.gid, h.pid) == (56, 15, 1 << 63 | 9, 77, 1000, 1001,
                                                                             4321)


def test_short_header_is_rejected() -> None:
    with pytest.raises(ValueError):
        P.decode_header(b"\0" * 39)


def test_reply_and_error_layout() -> None:
    out = P.reply(5, b"abc")
    assert struct.unpack("=IiQ", out[:16]) == (19, 0, 5) and out[16:] == b"abc"
    assert struct.unpack("=IiQ", P.reply_error(5, 2)) == (16, -2, 5)


def test_notify_resend_is_unique_zero_code_seven() -> None:
    # fuse.h: notifications carry unique 0 and the notify code in `error`; FUSE_NOTIFY_RESEND = 7.
    assert struct.unpack("=IiQ", P.notify(P.NotifyCode.RESEND)) == (16, 7, 0)


def _init_body(major: int, minor: int, flags: int, flags2: int = 0) -> bytes:
    return struct.pack("=IIII", major, minor, 65536, flags) + struct.pack("=I", flags2) + b"\0" * 44


def test_negotiate_takes_smaller_minor_and_no_caching_flags() -> None:
    offered = (P.FUSE_ASYNC_READ | P.FUSE_WRITEBACK_CACHE | P.FUSE_DO_READDIRPLUS | P.FUSE_INIT_EXT | P.FUSE_MAX_PAGES
               | P.FUSE_PARALLEL_DIROPS)
    body, res = P.negotiate_init(P.decode_init(_init_body(7, 45, offered, P.FUSE_HAS_RESEND >> 32)))
    assert res is not None
    major, minor, readahead, flags = struct.unpack_from("=IIII", body)
    # readahead 0: it only fills the page cache, which the workers refuse to fill (splice guard, wire.Dispatcher._read)
    assert (major, minor, readahead) == (7, P.FUSE_KERNEL_MINOR_VERSION, 0)
    assert not flags & P.FUSE_WRITEBACK_CACHE and not flags & P.FUSE_DO_READDIRPLUS
    assert flags & P.FUSE_PARALLEL_DIROPS  # lookups in one directory are not serialised by the kernel
    assert res.kernel_can_resend
    # an older kernel: its minor wins, and no FUSE_HAS_RESEND
    _body, old = P.negotiate_init(P.decode_init(_init_body(7, 31, P.FUSE_ASYNC_READ)))
    assert old is not None and old.minor == 31 and not old.kernel_can_resend


def test_negotiate_newer_major_asks_again_and_ancient_compat_size() -> None:
    body, res = P.negotiate_init(P.InitIn(8, 0, 0, 0))
    assert res is None and struct.unpack_from("=II", body) == (7, P.FUSE_KERNEL_MINOR_VERSION)
    body, res = P.negotiate_init(P.InitIn(7, 22, 0, 0))
    assert res is not None and len(body) == 24  # FUSE_COMPAT_22_INIT_OUT_SIZE
    with pytest.raises(ValueError):
        P.negotiate_init(P.InitIn(6, 0, 0, 0))


def test_dirent_is_padded_to_8() -> None:
    rec = P.encode_dirent(5, 3, 8, b"meminfo")
    assert len(rec) == 24 + 8 and len(rec) % 8 == 0
    assert struct.unpack_from("=QQII", rec) == (5, 3, 7, 8) and rec[24:31] == b"meminfo"


def test_timeouts_split_into_seconds_and_nanoseconds() -> None:
    assert P.split_timeout(0.5) == (0, 500_000_000)
    assert P.split_timeout(2.25) == (2, 250_000_000)
