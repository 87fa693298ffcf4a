"""Tier 2: fuse/route.py between two real Router objects of this process (real abstract unix sockets, real
SCM_CREDENTIALS; no mount). A forwarded READ reaches the owner and its acknowledgement clears the forwarder's
pending entry; an owner that is gone fails the forward at once; one that never answers (a SIGSTOPped worker)
hands the request back to the forwarder after the deadline and is then skipped; a full inbox is retried, not
dropped; a datagram from a process that is not a worker of this connection is refused."""

from __future__ import annotations

import os
import socket
import struct
import time
import uuid

import pytest

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse import route
from pylxcfs.fuse.route import Router, owner_of, unique_of

pytestmark = pytest.mark.root  # a forwarded datagram is accepted only from uid 0


def _marker() -> str:
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode()  # an argv element of this process: it passes as "a worker"


def _dev() -> str:
    # the connection id must be one of our argv elements too (the peer check): use the marker's text
    return _marker()


def _read_req(fh: int, offset: int, unique: int) -> bytes:
    body = P.READ_IN.pack(fh, offset, 4096, 0, 0, 0, 0)
    return struct.pack("=IIQQIIIHH", 40 + len(body), P.Opcode.READ, unique, 2, 0, 0, 4242, 0, 0) + body


@pytest.fixture
def pair() -> tuple[Router, Router]:
    # a unique connection id per test, so concurrent test runs never see each other's addresses
    tag = uuid.uuid4().hex[:8]
    a = Router(_dev(), 0x1000 | int(tag[:4], 16), _marker(), deadline_s=0.3)
    b = Router(_dev(), 0x20000 | int(tag[4:], 16), _marker(), deadline_s=0.3)
    a.prefix = b.prefix = f"\0pylxcfs-test-{tag}-".encode()
    for r in (a, b):
        r.inbox.close()
        r.inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        r.inbox.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        r.inbox.bind(r.prefix + f"{r.salt:08x}".encode())
    yield a, b
    a.close()
    b.close()


def _wait(cond: object, timeout: float = 2.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.01)
    raise AssertionError("timed out")


def test_forward_answer_acknowledge(pair: tuple[Router, Router]) -> None:
    a, b = pair
    req = _read_req((b.salt << 32) | 7, 100, 0x55)
    assert owner_of(req) == b.salt and unique_of(req) == 0x55
    assert a.forward(b.salt, req)
    assert a.pending() == 1
    got: list[bytes] = []
    _wait(lambda: got.extend(b.receive()) or got)
    assert got == [req]
    b.answered(req)  # the owner replied on /dev/fuse: it tells the forwarder
    _wait(lambda: (a.receive(), a.pending())[1] == 0)
    time.sleep(0.4)
    assert a.expired() == []  # acknowledged: never handed back


def test_owner_gone_fails_at_once(pair: tuple[Router, Router]) -> None:
    a, b = pair
    b.close()  # crashed or killed: its address is gone
    assert not a.forward(b.salt, _read_req((b.salt << 32) | 1, 0, 1))
    assert a.pending() == 0


def test_retiring_owner_fails_at_once(pair: tuple[Router, Router]) -> None:
    a, b = pair
    assert b.shut() == []
    assert not a.forward(b.salt, _read_req((b.salt << 32) | 1, 0, 1))


def test_silent_owner_hands_the_request_back_and_is_skipped(pair: tuple[Router, Router]) -> None:
    a, b = pair
    req = _read_req((b.salt << 32) | 3, 10, 9)
    t0 = time.monotonic()
    assert a.forward(b.salt, req)  # b never receives: a SIGSTOPped worker
    assert 0 <= a.next_timeout_ms() <= 400
    back: list[bytes] = []
    _wait(lambda: back.extend(a.expired()) or back, 2.0)
    assert back == [req] and time.monotonic() - t0 >= 0.3
    assert not a.forward(b.salt, _read_req((b.salt << 32) | 3, 10, 10))  # skipped while unresponsive
    a._unresponsive[b.salt] = time.monotonic() - 1  # the skip period ends
    assert a.forward(b.salt, _read_req((b.salt << 32) | 3, 10, 11))


def test_full_inbox_is_retried_not_dropped(pair: tuple[Router, Router]) -> None:
    a, b = pair
    reqs = [_read_req((b.salt << 32) | 1, 0, u) for u in range(1, 41)]  # more than net.unix.max_dgram_qlen
    assert all(a.forward(b.salt, r) for r in reqs)
    got: list[bytes] = []
    end = time.monotonic() + 3
    while len(got) < len(reqs) and time.monotonic() < end:
        got.extend(b.receive())
        assert a.expired() == []  # retries due are sent; nothing handed back before the deadline
        time.sleep(0.006)
    assert sorted(unique_of(g) for g in got) == list(range(1, 41))


def test_foreign_sender_and_wrong_handle_are_refused(pair: tuple[Router, Router]) -> None:
    a, b = pair
    # a READ of a handle that is not b's, forwarded to b: refused
    assert a.forward(b.salt, _read_req((0x777 << 32) | 1, 0, 5))
    # a datagram from a process that is no worker (a child whose argv does not carry the marker): refused
    pid = os.fork()
    if pid == 0:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(_read_req((b.salt << 32) | 1, 0, 6), b.prefix + f"{b.salt:08x}".encode())
        finally:
            os.execv("/bin/true", ["/bin/true"])
    os.waitpid(pid, 0)
    time.sleep(0.05)
    b._peers.clear()
    assert b.receive() == []
    assert b.refused == 2


def test_release_notices_reach_the_owner_batched_and_only_drop_its_own_handles(pair: tuple[Router, Router]) -> None:
    a, b = pair
    dropped: list[int] = []
    b.on_drop = dropped.append
    mine = [(b.salt << 32) | n for n in range(1, route.DROP_BATCH + 5)]  # 3, then one batch and one more
    for fh in mine[:3]:
        a.note_release(b.salt, fh)  # RELEASEs of b's handles answered by a
    a.note_release(b.salt, (0x777 << 32) | 9)  # not b's: b must ignore it
    assert a.has_timers() and 0 <= a.next_timeout_ms() <= int(route.DROP_FLUSH_S * 1000) + 1
    a.flush_drops()  # not due yet: nothing sent
    assert b.receive() == [] and dropped == []
    a._drops_since -= route.DROP_FLUSH_S
    a.flush_drops()  # due: one notice
    _wait(lambda: (b.receive(), dropped)[1])
    assert dropped == mine[:3] and not a.has_timers()
    for fh in mine[3:]:  # a full batch goes at once, without waiting for the flush time
        a.note_release(b.salt, fh)
    _wait(lambda: (b.receive(), len(dropped))[1] >= 3 + route.DROP_BATCH)
    assert dropped[:3 + route.DROP_BATCH] == mine[:3 + route.DROP_BATCH]
    b.close()
    a.note_release(b.salt, mine[0])
    a.flush_drops(force=True)  # the owner is gone: counted (the one left from the batch, and this), never raised
    assert a.drops_lost == 2
    assert 4 + route.DROP_BATCH * 8 <= route.MAX_DATAGRAM


def test_module_constants() -> None:
    assert route.OP_READ == P.Opcode.READ and route.OP_RELEASE == P.Opcode.RELEASE


def test_worker_routes_only_what_needs_the_owner(pair: tuple[Router, Router]) -> None:
    """fuse/worker.py `_route` with real routers: a READ at offset 0 of the other worker's handle is answered where
    it lands, except on an inode whose view keeps per-container state in the worker (/proc/stat), which goes to
    the owner; a RELEASE is answered here (the owner told in a batch); a continuation (offset > 0) goes to the
    owner unless the board says it keeps no partial render."""
    from pylxcfs.fuse.worker import _route

    a, b = pair
    stat_ino, meminfo_ino = 7, 2  # _read_req's nodeid is 2
    fh = (b.salt << 32) | 1  # b's handle, read through a

    def read(nodeid: int, offset: int, unique: int) -> bytes:
        r = bytearray(_read_req(fh, offset, unique))
        struct.pack_into("=Q", r, 16, nodeid)
        return bytes(r)

    assert _route(read(meminfo_ino, 0, 11), a, a.salt, None, frozenset({stat_ino})) is False
    assert b.receive() == []
    assert _route(read(stat_ino, 0, 12), a, a.salt, None, frozenset({stat_ino})) is True
    _wait(lambda: [unique_of(x) for x in b.receive()] == [12])
    release = struct.pack("=IIQQIIIHH", 40 + P.RELEASE_IN.size, P.Opcode.RELEASE, 13, meminfo_ino, 0, 0, 4242, 0,
                          0) + P.RELEASE_IN.pack(fh, 0, 0, 0)
    assert _route(release, a, a.salt, None, frozenset({stat_ino})) is False
    assert _route(read(meminfo_ino, 100, 14), a, a.salt, None, frozenset({stat_ino})) is True
    _wait(lambda: [unique_of(x) for x in b.receive()] == [14])
    # our own handle: never routed
    own = bytearray(read(stat_ino, 0, 15))
    struct.pack_into("=Q", own, 40, (a.salt << 32) | 1)
    assert _route(bytes(own), a, a.salt, None, frozenset({stat_ino})) is False
