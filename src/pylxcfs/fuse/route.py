"""Handle routing between the workers of one pool: what needs a handle's state goes to the worker that has it.

Role: the kernel hands every request to whichever worker reads first, but a file handle's state (the bytes of a
partly read render, fuse/handles.py) lives in the worker that created it; the salt in the handle's high 32 bits
names that worker. fuse/worker.py decides what must go there (a READ at offset > 0, a partial render's first READ,
a READ at offset 0 of a view that keeps per-container state in the worker) and answers the rest where it lands (a
READ at offset 0, a RELEASE, whose owner is then told in a batched release notice). A forwarded request is sent raw
over a Unix datagram socket to the owner, which answers it on the shared /dev/fuse descriptor (all workers share
one open file description, so the reply finds the request on the connection's processing list whoever read it) and
then acknowledges it to the forwarder. Without this, a file read in pieces could mix two renders.

Each worker binds an abstract address `\\0pylxcfs-<dev>-<salt>` (dev = the connection's device number) and
sends from it, so the owner knows where to acknowledge. A datagram is accepted only from root, from a process
whose command line is a worker of the same connection (kernel-checked SCM_CREDENTIALS), and a forwarded
request only if it is a READ or RELEASE of one of our handles: a forged datagram cannot make us answer anything
else; a release notice only drops handles of ours. (History that every worker must see, the loadavg figures,
is not routed at all: it lives in a table all of them map, sharedtable.py.)

Nothing here may make a read hang on an owner that cannot answer:
- owner gone (crashed, killed, retired: its address is unbound or shut for receiving): the send fails at once
  and the forwarder answers the request itself (fuse/ops.py: an offset-0 read renders afresh; a continuation
  of a render that died with its owner is end-of-file);
- owner's inbox full (a burst): the forwarder retries the send every RETRY_S;
- owner alive but not answering (SIGSTOPped, or stuck in another request): no acknowledgement within the
  deadline (the supervisor's request timeout) and the forwarder answers itself; that owner is then skipped
  for UNRESPONSIVE_S. If the owner answers late, the kernel refuses the second reply (ENOENT): harmless.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_DEADLINE_S = 2.0
RETRY_S = 0.005
UNRESPONSIVE_S = 5.0
_UCRED = struct.Struct("=iII")  # struct ucred: pid, uid, gid
_HEAD = struct.Struct("=IIQ").unpack_from  # fuse_in_header: len, opcode, unique
_FH = struct.Struct("=Q").unpack_from  # fuse_read_in.fh / fuse_release_in.fh, right after the 40-byte header
_ACK = struct.Struct("=4sQ")  # b"ACK\0", unique
ACK_MAGIC = b"ACK\0"
DROP_MAGIC = b"DRP\0"  # followed by handles (u64 each) whose RELEASE another worker answered
_DROP_FH = struct.Struct("=Q")
DROP_BATCH = 28  # handles per drop notice (4 + 28 * 8 = 228 bytes, under MAX_DATAGRAM)
DROP_FLUSH_S = 0.2  # a partly filled batch waits at most this long
OP_READ, OP_RELEASE = 15, 18  # include/uapi/linux/fuse.h
ROUTED = frozenset((OP_READ, OP_RELEASE))
MAX_DATAGRAM = 256  # a READ or RELEASE request is 80 / 64 bytes, an acknowledgement 12
_PEER_CACHE_MAX = 256
_MAX_PENDING = 4096  # forwarded requests awaiting acknowledgement (the kernel has at most a few thousand in flight)


def owner_of(buf: bytes) -> int:
    """The salt of the handle a READ/RELEASE request carries, or 0 for any other request."""
    if len(buf) < 48:
        return 0
    _len, opcode, _unique = _HEAD(buf)
    if opcode not in ROUTED:
        return 0
    return int(_FH(buf, 40)[0] >> 32)


def unique_of(buf: bytes) -> int:
    """The request's unique id."""
    return int(_HEAD(buf)[2]) if len(buf) >= 16 else 0


class Router:
    """This worker's inbox (forwarded requests and acknowledgements) and what it forwarded and awaits."""

    def __init__(self, dev: str, salt: int, worker_marker: str, deadline_s: float = DEFAULT_DEADLINE_S) -> None:
        self.prefix = f"\0pylxcfs-{dev}-".encode()
        self.salt = salt
        self.dev = dev
        self.marker = worker_marker
        self.deadline_s = deadline_s
        self.inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        self.inbox.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.inbox.bind(self._addr(salt))
        # unique -> (give-up time, owner, request, next send time or 0 once sent), oldest first
        self._pending: OrderedDict[int, tuple[float, int, bytes, float]] = OrderedDict()
        self._reply_to: dict[int, bytes] = {}  # unique of a request forwarded to us -> the forwarder's address
        self._unacked: list[tuple[bytes, bytes]] = []  # acknowledgements whose send must be retried
        self._unresponsive: dict[int, float] = {}  # owner salt -> skip it until then
        self._peers: dict[int, bool] = {}
        self._drops: dict[int, list[int]] = {}  # owner salt -> handles released here, not yet told
        self._drops_since = 0.0
        self.on_drop: Callable[[int], None] = lambda _fh: None  # the owner side: forget a handle
        self.closed = False
        self.forwarded = self.received = self.refused = self.expired_count = self.drops_lost = 0

    def _addr(self, salt: int) -> bytes:
        return self.prefix + f"{salt:08x}".encode()

    def fileno(self) -> int:
        """The inbox descriptor (poll it with /dev/fuse)."""
        return self.inbox.fileno()

    # -- forwarding side --------------------------------------------------------------------------------------
    def forward(self, owner: int, buf: bytes) -> bool:
        """Hand `buf` to the worker `owner`; False if it cannot take it (answer it here instead)."""
        now = time.monotonic()
        skip = self._unresponsive.get(owner)
        if skip is not None:
            if now < skip:
                return False
            del self._unresponsive[owner]
        if len(self._pending) >= _MAX_PENDING:
            return False
        unique = unique_of(buf)
        sent = self._send(owner, buf)
        if sent is None:
            return False
        self._pending[unique] = (now + self.deadline_s, owner, buf, 0.0 if sent else now + RETRY_S)
        self.forwarded += 1
        return True

    def _send(self, owner: int, buf: bytes) -> bool | None:
        """True: queued at the owner; False: its inbox is full (retry); None: it is gone or retiring."""
        try:
            self.inbox.sendto(buf, self._addr(owner))
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno == errno.EAGAIN:
                return False
            return None  # ECONNREFUSED (no such address), EPIPE (shut for receiving), ...
        return True

    def note_release(self, owner: int, fh: int) -> None:
        """A RELEASE of `owner`'s handle was answered here: tell the owner (batched, no acknowledgement) so it
        frees what it keeps for the handle. A lost notice costs the owner one table entry, never a reply."""
        batch = self._drops.get(owner)
        if batch is None:
            batch = self._drops[owner] = []
            if len(self._drops) == 1:
                self._drops_since = time.monotonic()
        batch.append(fh)
        if len(batch) >= DROP_BATCH:
            self._send_drops(owner, self._drops.pop(owner))

    def flush_drops(self, force: bool = False) -> None:
        """Send the release notices that are due (all of them with `force`)."""
        if self._drops and (force or time.monotonic() - self._drops_since >= DROP_FLUSH_S):
            drops, self._drops = self._drops, {}
            for owner, batch in drops.items():
                self._send_drops(owner, batch)

    def _send_drops(self, owner: int, batch: list[int]) -> None:
        msg = DROP_MAGIC + b"".join(_DROP_FH.pack(fh) for fh in batch)
        if not self._send(owner, msg):
            self.drops_lost += len(batch)  # gone (it holds nothing any more) or full (a few entries kept)

    def expired(self) -> list[bytes]:
        """Forwarded requests to answer here now: the owner went away before a retried send got through, or did
        not acknowledge within the deadline (then it is skipped for UNRESPONSIVE_S). Retries due are sent."""
        now = time.monotonic()
        out: list[bytes] = []
        for unique, (give_up, owner, buf, retry_at) in list(self._pending.items()):
            if retry_at and now >= retry_at:
                sent = self._send(owner, buf)
                if sent is None:
                    del self._pending[unique]
                    out.append(buf)
                    continue
                self._pending[unique] = (give_up, owner, buf, 0.0 if sent else now + RETRY_S)
            if now >= give_up:
                del self._pending[unique]
                self._unresponsive[owner] = now + UNRESPONSIVE_S
                self.expired_count += 1
                out.append(buf)
        return out

    def next_timeout_ms(self) -> int:
        """How long poll() may sleep before expired() or flush_drops() has work (-1: nothing pending)."""
        if not self._pending and not self._unacked and not self._drops:
            return -1
        now = time.monotonic()
        soonest = min((min(g, r) if r else g for g, _o, _b, r in self._pending.values()), default=now + 1)
        if self._unacked:
            soonest = min(soonest, now + RETRY_S)
        if self._drops:
            soonest = min(soonest, self._drops_since + DROP_FLUSH_S)
        return max(0, int((soonest - now) * 1000) + 1)

    def has_timers(self) -> bool:
        """Whether expired(), retry_acks() or flush_drops() could have work."""
        return bool(self._pending or self._unacked or self._drops)

    def pending(self) -> int:
        """Forwarded requests not yet acknowledged."""
        return len(self._pending)

    # -- owner side -------------------------------------------------------------------------------------------
    def answered(self, buf: bytes) -> None:
        """Tell the forwarder of `buf` (if it was forwarded to us) that it has been answered."""
        unique = unique_of(buf)
        addr = self._reply_to.pop(unique, None)
        if addr is None:
            return
        ack = _ACK.pack(ACK_MAGIC, unique)
        if not self._send_ack(ack, addr):
            self._unacked.append((ack, addr))

    def _send_ack(self, ack: bytes, addr: bytes) -> bool:
        try:
            self.inbox.sendto(ack, addr)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # the forwarder is gone: nobody to tell
        return True

    def retry_acks(self) -> None:
        """Send the acknowledgements a full inbox refused earlier."""
        if self._unacked:
            self._unacked = [(a, addr) for a, addr in self._unacked if not self._send_ack(a, addr)]

    def _is_peer(self, pid: int, uid: int) -> bool:
        if uid != 0:
            return False
        ok = self._peers.get(pid)
        if ok is None:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                return False
            ok = self.marker.encode() in argv and self.dev.encode() in argv
            if len(self._peers) >= _PEER_CACHE_MAX:
                self._peers.clear()
            self._peers[pid] = ok
        return ok

    def receive(self) -> list[bytes]:
        """Every forwarded request waiting in the inbox that passes the checks (acknowledgements are consumed)."""
        out: list[bytes] = []
        space = socket.CMSG_SPACE(_UCRED.size)
        while True:
            try:
                data, anc, _flags, addr = self.inbox.recvmsg(MAX_DATAGRAM, space)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EINVAL):
                    return out
                raise
            if not data:  # shut for receiving and drained
                return out
            cred = next((c for lvl, typ, c in anc if lvl == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS),
                        None)
            if cred is None or len(cred) < _UCRED.size or not self._is_peer(*_UCRED.unpack_from(cred)[:2]):
                self.refused += 1
                continue
            if len(data) == _ACK.size and data[:4] == ACK_MAGIC:
                self._pending.pop(_ACK.unpack(data)[1], None)
                continue
            if data[:4] == DROP_MAGIC:
                for (fh,) in _DROP_FH.iter_unpack(data[4:4 + (len(data) - 4) // 8 * 8]):
                    if fh >> 32 == self.salt:
                        self.on_drop(fh)
                continue
            if owner_of(data) != self.salt or not isinstance(addr, bytes) or not addr.startswith(self.prefix):
                self.refused += 1
                continue
            self.received += 1
            if len(self._reply_to) >= _MAX_PENDING:
                self._reply_to.pop(next(iter(self._reply_to)))
            self._reply_to[unique_of(data)] = addr
            out.append(data)

    def shut(self) -> list[bytes]:
        """Stop accepting (senders now fail at once and answer themselves) and return what was already queued."""
        if self.closed:
            return []
        self.flush_drops(force=True)
        self.closed = True
        with contextlib.suppress(OSError):
            self.inbox.shutdown(socket.SHUT_RD)
        return self.receive()

    def close(self) -> None:
        """Close the inbox."""
        self.inbox.close()
