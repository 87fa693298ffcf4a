"""Tier 2: Operations and the raw dispatcher called in-process with fake request headers (no mount).

The fake renderer's content names the caller pid, so each check below is derived from the request
we sent, not from our own output."""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import stat
import struct
import threading

import pytest

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.handles import HandleTable
from pylxcfs.fuse.ops import FsError, Operations, stable_ino
from pylxcfs.fuse.wire import Dispatcher
from pylxcfs.fuse.worker import StopFlag, serve
from pylxcfs.views.registry import VIEW_PATHS, directories

from .conftest import FakeRenderer, read_body, request, split_reply

MEMINFO = stable_ino("proc/meminfo")


def _open(d: Dispatcher, flags: int = os.O_RDONLY, pid: int = 4242, ino: int = MEMINFO) -> tuple[int, int, int]:
    err, payload = split_reply(d.handle(request(P.Opcode.OPEN, P.OPEN_IN.pack(flags, 0), ino, pid)))
    if err:
        return err, 0, 0
    fh, open_flags, _ = P.OPEN_OUT.unpack(payload)
    return 0, fh, open_flags


def _read(d: Dispatcher, fh: int, off: int, size: int, pid: int = 4242) -> bytes:
    err, payload = split_reply(d.handle(request(P.Opcode.READ, read_body(fh, off, size), MEMINFO, pid)))
    assert err == 0
    return payload


def test_lookup_walks_the_registry_tree(dispatcher: Dispatcher) -> None:
    ino = P.FUSE_ROOT_ID
    for part in ["proc", "meminfo"]:
        err, payload = split_reply(dispatcher.handle(request(P.Opcode.LOOKUP, part.encode() + b"\0", ino)))
        assert err == 0
        nodeid, _gen, ev, av, evn, avn = P.ENTRY_OUT.unpack_from(payload)
        assert (ev, evn, av, avn) == (0, 500_000_000, 0, 500_000_000)  # 0.5 s, as lxcfs
        ino = nodeid
    assert ino == MEMINFO


def test_unknown_names_are_enoent(dispatcher: Dispatcher) -> None:
    err, _ = split_reply(dispatcher.handle(request(P.Opcode.LOOKUP, b"nope\0")))
    assert err == -errno.ENOENT
    err, _ = split_reply(dispatcher.handle(request(P.Opcode.GETATTR, P.GETATTR_IN.pack(0, 0, 0), 12345)))
    assert err == -errno.ENOENT


def test_getattr_is_regular_0444_host_size_for_every_caller(dispatcher: Dispatcher,
                                                             renderer: FakeRenderer) -> None:
    seen = set()
    for pid in (1, 4242, 99999):
        err, payload = split_reply(dispatcher.handle(request(P.Opcode.GETATTR, P.GETATTR_IN.pack(0, 0, 0), MEMINFO,
                                                             pid)))
        assert err == 0
        fields = P.ATTR.unpack_from(payload, P.ATTR_OUT.size)
        ino, size, mode, nlink = fields[0], fields[1], fields[9], fields[10]
        seen.add((ino, size, mode, nlink))
    # st_size is the host file's length, whoever asks (lxcfs semantics; see ops.Operations.attr_of)
    assert seen == {(MEMINFO, len(renderer.host_bytes("proc/meminfo")), stat.S_IFREG | 0o444, 1)}


def test_open_sets_direct_io_and_never_keep_cache(dispatcher: Dispatcher) -> None:
    err, _fh, flags = _open(dispatcher)
    assert err == 0 and flags & P.FOPEN_DIRECT_IO and not flags & P.FOPEN_KEEP_CACHE


@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC])
def test_write_opens_are_refused(dispatcher: Dispatcher, flags: int) -> None:
    assert _open(dispatcher, flags)[0] == -errno.EACCES


def test_opening_a_directory_is_eisdir(dispatcher: Dispatcher) -> None:
    assert _open(dispatcher, ino=stable_ino("proc"))[0] == -errno.EISDIR


def test_sequential_reads_of_any_size_reassemble_one_render(dispatcher: Dispatcher, renderer: FakeRenderer) -> None:
    _, fh, _ = _open(dispatcher, pid=777)
    expected = renderer.render("proc/meminfo", 777)
    got = bytearray()
    for size in (1, 7, 100, 3):
        got += _read(dispatcher, fh, len(got), size, pid=777)
    assert _read(dispatcher, fh, 5, 17) == b""  # a seek back into the kept render: end of file (docs/design-fuse.md)
    assert _read(dispatcher, fh, len(got) + 1, 17) == b""  # and past where the last piece ended
    while chunk := _read(dispatcher, fh, len(got), 1000, pid=777):  # the sequential reader goes on unharmed
        got += chunk
    assert bytes(got) == expected
    assert _read(dispatcher, fh, 123, 17) == b"" and _read(dispatcher, fh, len(expected) + 10, 100) == b""


def test_every_offset_zero_read_renders_for_the_reader(dispatcher: Dispatcher, renderer: FakeRenderer) -> None:
    # As the C lxcfs (and the kernel's seq_file files): the content is the READER's, rendered at each read at 0.
    _, fh_a, _ = _open(dispatcher, pid=1001)
    _, fh_b, _ = _open(dispatcher, pid=2002)
    a = _read(dispatcher, fh_a, 0, 1 << 20, pid=1001)
    b = _read(dispatcher, fh_b, 0, 1000, pid=3003)  # fd passed to another process: its own view
    assert b"pid=1001 " in a and b"pid=2002" not in a
    assert b"pid=3003 " in b and b"pid=2002" not in b
    # reads at offset > 0 continue the handle's last offset-0 render, whoever asks
    assert _read(dispatcher, fh_b, 1000, 50, pid=1001) == renderer.render("proc/meminfo", 3003)[1000:1050]


class Ticking(FakeRenderer):
    """Content that changes at every render (a generation number), like /proc/stat or /proc/uptime."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = 0

    def render(self, path: str, caller_pid: int) -> bytes:
        self.gen += 1
        return b"".join(b"gen=%06d pid=%d line=%05d\n" % (self.gen, caller_pid, i) for i in range(400))


def test_a_render_delivered_whole_keeps_only_its_length() -> None:
    r = Ticking()
    ops = Operations(r, handles=HandleTable(share_from=0))
    fh = ops.open(MEMINFO, os.O_RDONLY, 9)
    whole = ops.read(MEMINFO, fh, 0, 1 << 20, 9)  # cat, top, Python: the file fits one READ
    assert whole.startswith(b"gen=000001 ") and ops.handles.content(fh) == len(whole)
    assert ops.handles.distinct_buffers() == 0 and ops.handles.held_bytes == 0
    assert ops.read(MEMINFO, fh, len(whole), 1 << 20, 9) == b"" and r.gen == 1  # the reader's EOF read
    # a pread into the middle of a file it already got whole: end of file, no second render (another pool worker
    # may have made the last render, of another length: its tail would be a second snapshot)
    assert ops.read(MEMINFO, fh, 100, 30, 9) == b"" and r.gen == 1
    # a partial read at offset 0 keeps its render for the continuation
    head = ops.read(MEMINFO, fh, 0, 100, 9)
    assert r.gen == 2 and ops.handles.held_bytes == len(whole)
    assert head + ops.read(MEMINFO, fh, 100, 1 << 20, 9) == \
        b"".join(b"gen=000002 pid=9 line=%05d\n" % i for i in range(400))


def test_partial_reads_past_the_byte_cap_are_refused_whole_reads_never(caplog: pytest.LogCaptureFixture) -> None:
    r = Ticking()
    size = len(r.render("proc/meminfo", 1))
    d = Dispatcher(Operations(r, handles=HandleTable(share_from=0, max_bytes=2 * size)))
    fhs = [_open(d, pid=1)[1] for _ in range(4)]
    assert _read(d, fhs[0], 0, 100, pid=1) and _read(d, fhs[1], 0, 100, pid=1)  # two distinct renders kept
    with caplog.at_level(logging.WARNING):
        err, _ = split_reply(d.handle(request(P.Opcode.READ, read_body(fhs[2], 0, 100), MEMINFO, 1)))
    assert err == -errno.ENOMEM and "ENOMEM" in caplog.text
    assert len(_read(d, fhs[2], 0, 1 << 20, pid=1)) == size  # a whole read keeps nothing: served
    assert _read(d, fhs[1], 100, 20, pid=1)  # the kept renders still serve their continuations
    d.handle(request(P.Opcode.RELEASE, P.RELEASE_IN.pack(fhs[0], 0, 0, 0), MEMINFO))
    assert _read(d, fhs[3], 0, 100, pid=1)  # room again after a release
    assert d.ops.handles.held_bytes == 2 * size


def test_pread_at_zero_is_fresh_and_later_offsets_continue_that_render() -> None:
    r = Ticking()
    d = Dispatcher(Operations(r))
    _, fh, _ = _open(d, pid=55)
    _, other, _ = _open(d, pid=55)
    assert r.gen == 0  # open renders nothing
    # never rendered: a first read from the middle is end of file (as the C lxcfs answers), and renders nothing
    assert _read(d, fh, 100, 10, pid=55) == b"" and r.gen == 0
    first = _read(d, fh, 0, 4096, pid=55)
    assert first.startswith(b"gen=000001 ")
    second = _read(d, fh, 0, 4096, pid=55)  # a poller's pread(fd, n, 0): a new sample
    assert second.startswith(b"gen=000002 ") and second != first
    _read(d, other, 0, 10, pid=55)  # another handle's render (gen 3) does not touch this one
    tail = _read(d, fh, 4096, 1 << 20, pid=55)
    full = second + tail
    assert full == b"".join(b"gen=000002 pid=55 line=%05d\n" % i for i in range(400))  # one snapshot, not torn
    assert r.gen == 3


def test_handles_with_equal_renders_share_one_buffer() -> None:
    # share_from=0: sharing from the first handle on (the default starts at 64 live handles).
    ops = Operations(FakeRenderer(), handles=HandleTable(share_from=0))
    fhs = [ops.open(MEMINFO, os.O_RDONLY, p) for p in range(300)]
    for i, fh in enumerate(fhs):
        ops.read(MEMINFO, fh, 0, 10, 1000 + i % 3)  # three readers' contents
    assert ops.handles.distinct_buffers() == 3 and ops.handles.shared_buffers() == 3
    for fh in fhs[:100]:  # re-read by a fourth reader: the old buffers lose holders, a fourth appears
        ops.read(MEMINFO, fh, 0, 10, 4000)
    assert ops.handles.distinct_buffers() == 4
    assert ops.read(MEMINFO, fhs[0], 10, 30, 1) == FakeRenderer().render("proc/meminfo", 4000)[10:40]
    for fh in fhs:
        ops.release(fh)
    assert ops.open_handles() == 0 and ops.handles.shared_buffers() == 0  # the last holder frees the buffer


def test_sharing_starts_at_the_threshold() -> None:
    table = HandleTable(share_from=64)
    ops = Operations(FakeRenderer(), handles=table)
    fhs = [ops.open(MEMINFO, os.O_RDONLY, 1) for _ in range(200)]  # 200 live handles: above the threshold
    for fh in fhs:
        ops.read(MEMINFO, fh, 0, 10, 1)
    assert table.distinct_buffers() == 1
    for fh in fhs[:150]:
        ops.release(fh)
    assert table.distinct_buffers() == 1 and table.shared_buffers() == 1
    for fh in fhs[150:]:
        ops.release(fh)
    assert table.shared_buffers() == 0


def test_release_frees_the_handle(dispatcher: Dispatcher) -> None:
    _, fh, _ = _open(dispatcher)
    assert dispatcher.ops.open_handles() == 1
    err, _ = split_reply(dispatcher.handle(request(P.Opcode.RELEASE, P.RELEASE_IN.pack(fh, 0, 0, 0), MEMINFO)))
    assert err == 0 and dispatcher.ops.open_handles() == 0


def test_handle_from_another_worker_is_rendered_for_the_reader(renderer: FakeRenderer) -> None:
    old = Operations(renderer, salt=1)
    new = Operations(renderer, salt=2)
    fh = old.open(MEMINFO, os.O_RDONLY, 5555)
    fh2 = old.open(MEMINFO, os.O_RDONLY, 5555)
    data = new.read(MEMINFO, fh, 0, 1 << 20, 6666)  # the old worker is gone; the reader is 6666
    assert data == renderer.render("proc/meminfo", 6666)
    assert new.open_handles() == 1  # adopted (bounded: see HandleTable.max_foreign)
    assert new.read(MEMINFO, fh, len(data), 50, 6666) == b""  # its EOF read
    head = new.read(MEMINFO, fh, 0, 100, 6666)  # a partial read keeps the render here (no router: no owner)
    assert new.read(MEMINFO, fh, 100, 50, 6666) == data[100:150] and head == data[:100]
    # a foreign handle first read from the middle: EOF, never a splice of two renders
    assert new.read(MEMINFO, fh2, 1000, 50, 6666) == b""
    # a handle the new worker hands out never collides with the old one's
    assert new.open(MEMINFO, os.O_RDONLY, 1) >> 32 != fh >> 32


def test_inode_numbers_are_stable_across_processes(renderer: FakeRenderer) -> None:
    a, b = Operations(renderer, salt=1), Operations(renderer, salt=2)
    assert {n.path: i for i, n in a.tree.by_ino.items()} == {n.path: i for i, n in b.tree.by_ino.items()}


def _readdir(d: Dispatcher, ino: int, offset: int = 0, size: int = 4096) -> list[tuple[str, int]]:
    err, payload = split_reply(d.handle(request(P.Opcode.READDIR, read_body(0, offset, size), ino)))
    assert err == 0
    out, pos = [], 0
    while pos < len(payload):
        _ino, off, namelen, _type = P.DIRENT.unpack_from(payload, pos)
        name = payload[pos + 24:pos + 24 + namelen].decode()
        out.append((name, off))
        pos += (24 + namelen + 7) // 8 * 8
    return out


def test_readdir_lists_the_registry_and_resumes_at_offsets(dispatcher: Dispatcher) -> None:
    # proc's direct children: its files and subdirectories (pressure/) as the registry paths name them.
    proc_entries = sorted({p.split("/")[1] for p in VIEW_PATHS if p.startswith("proc/")})
    listing = _readdir(dispatcher, stable_ino("proc"))
    assert [n for n, _ in listing] == [".", "..", *proc_entries]
    resumed = _readdir(dispatcher, stable_ino("proc"), offset=listing[2][1])
    assert [n for n, _ in resumed] == [n for n, _ in listing[3:]]
    assert _readdir(dispatcher, stable_ino("proc"), size=40) == listing[:1]  # only what fits
    assert [n for n, _ in _readdir(dispatcher, P.FUSE_ROOT_ID)][2:] == list(directories()[""])


def test_mutations_and_unknown_ops(dispatcher: Dispatcher) -> None:
    assert split_reply(dispatcher.handle(request(P.Opcode.MKDIR, b"\0" * 8 + b"x\0")))[0] == -errno.EPERM
    assert split_reply(dispatcher.handle(request(P.Opcode.SETATTR, b"\0" * 88, MEMINFO)))[0] == -errno.EPERM
    assert split_reply(dispatcher.handle(request(P.Opcode.UNLINK, b"meminfo\0")))[0] == -errno.ENOSYS
    assert split_reply(dispatcher.handle(request(P.Opcode.GETXATTR, b"\0" * 8 + b"user.x\0")))[0] == -errno.ENOSYS
    assert split_reply(dispatcher.handle(request(99, b"")))[0] == -errno.ENOSYS
    assert split_reply(dispatcher.handle(request(P.Opcode.ACCESS, P.ACCESS_IN.pack(os.W_OK, 0), MEMINFO)))[0] == \
        -errno.EACCES
    assert split_reply(dispatcher.handle(request(P.Opcode.ACCESS, P.ACCESS_IN.pack(os.R_OK, 0), MEMINFO)))[0] == 0
    # FLUSH: ENOSYS makes the kernel stop sending it (fc->no_flush); close() still returns 0 (issue 5, perf).
    assert split_reply(dispatcher.handle(request(P.Opcode.FLUSH, b"\0" * 24, MEMINFO)))[0] == -errno.ENOSYS
    err, payload = split_reply(dispatcher.handle(request(P.Opcode.STATFS)))
    assert err == 0 and len(payload) == 80


def test_no_reply_for_forget(dispatcher: Dispatcher) -> None:
    assert dispatcher.handle(request(P.Opcode.FORGET, struct.pack("=Q", 1), MEMINFO)) is None
    assert dispatcher.handle(request(P.Opcode.BATCH_FORGET, P.BATCH_FORGET_IN.pack(0, 0))) is None


def test_interrupt_is_answered_enosys_once_so_the_kernel_stops_sending_them(dispatcher: Dispatcher) -> None:
    # The reply is a bare header (fuse_dev_do_write wants exactly 16 bytes) carrying the INTERRUPT's own unique,
    # low bit set, and -ENOSYS: the kernel's cue to set no_interrupt.
    out = dispatcher.handle(request(P.Opcode.INTERRUPT, P.INTERRUPT_IN.pack(8), unique=9))
    assert out == P.OUT_HEADER.pack(16, -errno.ENOSYS, 9)


class ExplodingRenderer(FakeRenderer):
    def render(self, path: str, caller_pid: int) -> bytes:
        raise RuntimeError("boom")


def test_an_exception_becomes_eio_and_the_dispatcher_lives_on(caplog: pytest.LogCaptureFixture) -> None:
    d = Dispatcher(Operations(ExplodingRenderer()))
    with caplog.at_level(logging.ERROR):
        err, fh, _ = _open(d)
        assert err == 0  # open renders nothing
        assert split_reply(d.handle(request(P.Opcode.READ, read_body(fh, 0, 4096), MEMINFO)))[0] == -errno.EIO
    assert "boom" in caplog.text and d.errors == 1
    assert split_reply(d.handle(request(P.Opcode.LOOKUP, b"proc\0")))[0] == 0


def test_fserror_carries_errno() -> None:
    assert FsError(errno.ENOENT, "x").errno == errno.ENOENT


def test_serve_loop_over_a_message_socket(renderer: FakeRenderer) -> None:
    """The worker loop end to end on a SOCK_SEQPACKET pair standing in for /dev/fuse (one message per read):
    it answers, skips no-reply requests, and stops between requests when asked."""
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    stop = StopFlag()
    d = Dispatcher(Operations(renderer))
    result: list[str] = []
    t = threading.Thread(target=lambda: result.append(serve(ours.fileno(), d, stop)))
    t.start()
    try:
        kernel.send(request(P.Opcode.FORGET, struct.pack("=Q", 1), MEMINFO, unique=1))
        kernel.send(request(P.Opcode.OPEN, P.OPEN_IN.pack(os.O_RDONLY, 0), MEMINFO, 31, unique=2))
        err, payload = split_reply(kernel.recv(1 << 20), unique=2)
        fh = P.OPEN_OUT.unpack(payload)[0]
        kernel.send(request(P.Opcode.READ, read_body(fh, 0, 1 << 16), MEMINFO, 31, unique=3))
        err, payload = split_reply(kernel.recv(1 << 20), unique=3)
        assert err == 0 and payload == renderer.render("proc/meminfo", 31)[: 1 << 16]
        assert not select.select([kernel], [], [], 0.1)[0]  # nothing was sent for FORGET
    finally:
        stop.set()
        t.join(5)
    assert result == ["stopped"] and not t.is_alive()
