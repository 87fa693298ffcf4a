"""The worker process: read requests from /dev/fuse, answer them through the Dispatcher, fairly per container.

Role: one serving process of the raw back-end's pool. The supervisor (fuse/supervisor.py) mounted the
filesystem, answered INIT and handed us the /dev/fuse descriptor; we never mount, never negotiate and never
decide what files contain (fuse/wire.py's Dispatcher, ops.py and the Renderer do). Started as
`python -m pylxcfs.fuse.worker --fd N ...` so that a reload runs the code that is on disk now.

Several workers read the same descriptor; the kernel gives each request to exactly one reader. The
descriptor is O_NONBLOCK (the supervisor sets it on the shared open file description), so a worker told to
stop (SIGUSR2 or SIGTERM) notices it between requests: it never abandons a request it has read, and exits
after answering what it holds.

Fairness: the kernel's pending queue is one FIFO for everybody, so 48 processes of one container flooding
the mount put 48 requests ahead of every other container's. A worker therefore reads everything pending
(up to HOLD_MAX requests) into one queue per requester pid namespace and answers them round-robin, pulling
newly arrived requests in after each answer: a container waits for at most one request of each other busy
container, not for the whole flood. The key (the nsfs inode of /proc/<pid>/ns/pid) is cached per pid; a
reused pid at worst misfiles one request's turn.

Handles: a handle's render lives in the worker that opened it; READ and RELEASE of another worker's handle
are forwarded to it (fuse/route.py), with fallbacks so that an owner that is gone or stopped never makes a
read hang.

We do not die with the supervisor: if it is killed we keep serving (containers see nothing) until a new
supervisor adopts the connection (fuse/adopt.py) and retires us. A shared page (--stats-fd, a memfd from the
supervisor) records the request in progress and since when, so the supervisor can replace a worker stuck
in one request (see docs/design-fuse.md, "Stuck requests").
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import faulthandler
import json
import logging
import mmap
import os
import select
import signal
import struct
import sys
import time
from collections import deque

from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.board import Board
from pylxcfs.fuse.ops import Operations
from pylxcfs.fuse.route import DEFAULT_DEADLINE_S, Router, owner_of
from pylxcfs.fuse.statspage import (
    EXIT_CONNECTION_GONE,
    MODULE,
    PROGRESS,
    PROGRESS_AT,
    STATS,
    STATS_SIZE,
)
from pylxcfs.fuse.wire import Dispatcher
from pylxcfs.syscalls import malloc_trim

log = logging.getLogger(__name__)

HOLD_MAX = 32  # requests one worker takes off the kernel queue at a time (the rest stay for the other workers)
NS_CACHE_MAX = 8192
IDLE_LOOK_MS = 250  # an idle worker looks at the device this often even without a wake-up (serve's docstring)
RETIRE_GRACE_S = 1.0  # a retiring worker still answers forwarded requests for its open handles this long
QUEUED_WAIT_NS = 20_000  # an idle wait shorter than this did not sleep: requests were already queued
TRIM_AFTER_REQUESTS = 2000  # an idle worker that served this many requests since it last trimmed its heap trims it

# fuse_in_header: len opcode unique nodeid uid gid pid (include/uapi/linux/fuse.h)
_HEAD = struct.Struct("=IIQQIII").unpack_from
_OPEN_NODE = struct.Struct("=4xI8xQ").unpack_from  # (opcode, nodeid) of a request
_PID_AT = struct.Struct("=I").unpack_from
_OP_FH = struct.Struct("=4xI32xQ").unpack_from  # (opcode, fh) of a READ or RELEASE (fh right after the header)
_READ_OFFSET = struct.Struct("=48xQ").unpack_from  # fuse_read_in.offset
_OP_RELEASE = int(P.Opcode.RELEASE)

# The stats page shared with the supervisor (its layout: fuse/statspage.py).
# Views whose every render advances per-container state kept in the worker (the monotone counters of /proc/stat):
# a READ at offset 0 of another worker's handle goes to that worker, so that one open file sees one state.
OWNER_READ_VIEWS = ("proc/stat",)
_BEGIN = STATS.pack_into
_IDLE = struct.Struct("=Q").pack_into


class StatsSlot:
    """The worker's side of the stats page (a no-op without one, e.g. in tests that call serve())."""

    def __init__(self, fd: int = -1) -> None:
        self.mm: mmap.mmap | None = mmap.mmap(fd, STATS_SIZE) if fd >= 0 else None

    def begin(self, buf: bytes, requests: int, errors: int) -> None:
        """Record the request about to be answered (and the totals so far)."""
        if self.mm is not None and len(buf) >= 40:
            _len, opcode, unique, _node, _uid, _gid, pid = _HEAD(buf)
            _BEGIN(self.mm, 0, time.monotonic_ns(), unique, pid, opcode, requests, errors)

    def end(self) -> None:
        """Nothing in progress any more."""
        if self.mm is not None:
            _IDLE(self.mm, 0, 0)

    def progress(self, taken: int, finished: int) -> None:
        """Publish how many requests we took into our queue and how many we finished (see statspage.py)."""
        if self.mm is not None:
            PROGRESS.pack_into(self.mm, PROGRESS_AT, taken, finished)


class StopFlag:
    """Set by SIGUSR2/SIGTERM; a self-pipe wakes a worker blocked in poll()."""

    def __init__(self) -> None:
        self.requested = False
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.wfd, False)
        os.set_blocking(self.rfd, False)

    def set(self) -> None:
        """Ask the loop to stop after the requests it holds."""
        self.requested = True
        with contextlib.suppress(BlockingIOError):
            os.write(self.wfd, b"x")

    def install(self, *signums: int) -> None:
        """Make these signals request a stop."""
        for s in signums:
            signal.signal(s, lambda _n, _f: self.set())


class FairQueue:
    """Requests held by this worker, one FIFO per requester pid namespace, served round-robin."""

    def __init__(self) -> None:
        self._q: dict[int, deque[bytes]] = {}  # insertion order is the ring: the front key is served next
        self._ns: dict[int, int] = {}
        self.held = 0
        self.taken = 0  # requests ever pushed (published with the finished count: StatsSlot.progress)

    def key(self, buf: bytes) -> int:
        """The requester's pid namespace (nsfs inode); 0 for kernel-internal requests (pid 0) or a gone pid."""
        pid = _PID_AT(buf, 32)[0] if len(buf) >= 36 else 0
        if pid == 0:
            return 0
        ns = self._ns.get(pid)
        if ns is None:
            try:
                ns = os.stat(f"/proc/{pid}/ns/pid").st_ino
            except OSError:
                ns = 0
            if len(self._ns) >= NS_CACHE_MAX:
                self._ns.clear()
            self._ns[pid] = ns
        return ns

    def push(self, buf: bytes) -> None:
        """Queue one request behind its namespace's earlier ones."""
        k = self.key(buf)
        q = self._q.get(k)
        if q is None:
            self._q[k] = deque((buf,))
        else:
            q.append(buf)
        self.held += 1
        self.taken += 1

    def pop(self) -> bytes:
        """The next request: the front namespace's oldest; that namespace goes to the back of the ring."""
        k = next(iter(self._q))
        q = self._q.pop(k)
        buf = q.popleft()
        if q:
            self._q[k] = q
        self.held -= 1
        return buf


def write_reply(fd: int, out: bytes) -> bool:
    """Write one reply; False when the kernel no longer wants it (ENOENT: the request was interrupted, resent
    to another worker after FUSE_NOTIFY_RESEND, or answered by the supervisor's stuck-request watchdog)."""
    try:
        os.write(fd, out)
    except FileNotFoundError:
        return False
    return True


class _Gone(Exception):
    """/dev/fuse said ENODEV: unmounted or aborted."""


def _read_one(fd: int, bufsize: int) -> bytes | None:
    """One request, or None if nothing is pending. Raises _Gone when the connection ended."""
    while True:
        try:
            return os.read(fd, bufsize)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.ENODEV:
                raise _Gone from None
            if e.errno in (errno.ENOENT, errno.EINTR):  # interrupted before we got it
                continue
            raise


def serve(fd: int, dispatcher: Dispatcher, stop: StopFlag, slot: StatsSlot | None = None,
          router: Router | None = None, grace_s: float = RETIRE_GRACE_S, board: Board | None = None,
          owner_reads: frozenset[int] = frozenset(), spin_us: int = 0) -> str:
    """Answer requests on `fd` until told to stop or the filesystem goes away. Returns why it ended. With a router,
    what needs another worker's handle state goes to that worker (`_route`, fuse/route.py), and requests forwarded
    to us are answered here and acknowledged. Told to stop, we take nothing new from the kernel but keep answering
    forwarded requests for our open handles for up to `grace_s` (a reader in the middle of a file when a reload
    retires us finishes it from the same render).

    One epoll set watches the device, the stop pipe and the inbox. While requests are held, a zero-timeout
    epoll_wait after each answer is the one system call that tells whether the device or the inbox has more
    (reading both until EAGAIN cost two failed system calls and two exceptions per request). The device is
    registered EPOLLEXCLUSIVE: each request wakes one idle worker, not the whole pool (on one CPU, every
    request woke both workers of a pool of two and one of them found nothing: that halved the pinned rate). A
    worker that takes a wake-up must then read, or the request waits unseen by the others: a worker told to
    stop first leaves the device's wait queue and then reads once more what is pending (the wake-up it may
    have taken in that instant); one holding requests never sleeps in epoll_wait, so it is never chosen; a
    SIGSTOPped one has left epoll_wait (the signal interrupts it). As a last guard an idle worker looks at the
    device every IDLE_LOOK_MS even without a wake-up."""
    ep = select.epoll()
    ep.register(fd, select.EPOLLIN | select.EPOLLEXCLUSIVE)
    on_device = True  # still on the device's wait queue (left when told to stop)
    ep.register(stop.rfd, select.EPOLLIN)
    inbox = -1
    if router is not None:
        inbox = router.fileno()
        ep.register(inbox, select.EPOLLIN)
    salt = router.salt if router is not None else 0
    bufsize = P.READ_BUFFER
    fq = FairQueue()
    slot = slot or StatsSlot()
    stopped_at = 0.0
    dev_ready = inbox_ready = True  # look at both once before the first wait
    trimmed_at = 0  # dispatcher.requests at the last malloc_trim
    published = 0  # fq.taken when progress was last published
    burst = True  # read everything pending (up to HOLD_MAX), not just one request: requests are queuing
    spin_ns = spin_us * 1000
    try:
        while True:
            if router is not None and not router.closed:
                if inbox_ready:
                    for fwd in router.receive():
                        fq.push(fwd)
                if router.has_timers():
                    late = router.expired()
                    if late:  # the owner cannot take them: answered here (fuse/ops.py's rules for foreign handles)
                        log.warning("%d forwarded request(s) not answered by their handle's worker (gone, stopped "
                                    "or stuck): answering them here", len(late))
                        for mine in late:
                            fq.push(mine)
                    router.retry_acks()
            last_look = False
            if stop.requested and on_device:
                ep.unregister(fd)
                on_device = False
                last_look = True
            if dev_ready and (not stop.requested or last_look):
                while fq.held < HOLD_MAX:
                    buf = _read_one(fd, bufsize)
                    if buf is None:
                        break
                    if router is not None and _route(buf, router, salt, board, owner_reads):
                        continue
                    fq.push(buf)
                    if not (burst or last_look):  # a new request woke us: answer it; a queue shows in the next look
                        break
            if fq.taken != published:  # what we hold, for the supervisor's watchdog (statspage.py)
                published = fq.taken
                slot.progress(fq.taken, fq.taken - fq.held)
            if not fq.held:
                if router is not None:
                    router.flush_drops()
                if not stop.requested:
                    t = router.next_timeout_ms() if router else -1
                    t0 = time.monotonic_ns()
                    dev_ready = inbox_ready = False
                    if spin_ns:
                        # Before sleeping, poll a little: a reader's open, read and close come back to back, a few
                        # microseconds after each answer, and a worker that is already awake takes the next at once
                        # instead of paying a wake-up (measured, separate CPUs: 4,700 -> 8,300 opens/s of a cpu
                        # list). On a CPU shared with the reader the reader runs as soon as it is woken by our reply
                        # (the kernel's wake-up preemption), so this costs nothing there either (docs/design-fuse.md).
                        end = t0 + spin_ns
                        while not (dev_ready or inbox_ready):
                            dev_ready, inbox_ready = _wait(ep, fd, inbox, 0)
                            if time.monotonic_ns() >= end:
                                break
                            # A task waiting for this CPU (the reader our reply woke, another container's) runs
                            # now rather than after the spin; with none waiting this returns at once.
                            os.sched_yield()
                    if not (dev_ready or inbox_ready):
                        dev_ready, inbox_ready = _wait(ep, fd, inbox, IDLE_LOOK_MS if t < 0 else min(t, IDLE_LOOK_MS))
                    # A wait that returned at once found a queue (a flood): take all of it, for the fair order.
                    # One that slept was woken by a new request: answer it first, a queue shows after.
                    burst = time.monotonic_ns() - t0 < QUEUED_WAIT_NS
                    if not (dev_ready or inbox_ready):  # the idle look: a lost wake-up heals here (see above)
                        dev_ready = True
                        if dispatcher.requests - trimmed_at >= TRIM_AFTER_REQUESTS:
                            # Idle after a burst: the renders' freed buffers go back to the kernel (glibc keeps
                            # them otherwise; measured: 1.5 MB PSS per worker after a benchmark).
                            trimmed_at = dispatcher.requests
                            malloc_trim()
                    continue
                if router is None or router.closed:
                    return "stopped"
                now = time.monotonic()
                if not stopped_at:  # retiring: from now on only the inbox wakes us (the stop pipe stays readable)
                    stopped_at = now
                    ep.unregister(stop.rfd)
                if not router.pending() and (not dispatcher.ops.open_handles() or now - stopped_at >= grace_s):
                    for fwd in router.shut():  # forwarded before the shutdown: ours to answer
                        fq.push(fwd)
                    continue
                left_ms = max(1, int((stopped_at + grace_s - now) * 1000) + 1)
                t = router.next_timeout_ms()
                dev_ready, inbox_ready = _wait(ep, fd, inbox, left_ms if t < 0 else min(t, left_ms))
                continue
            req = fq.pop()
            slot.begin(req, dispatcher.requests, dispatcher.errors)
            out = dispatcher.handle(req)
            if board is not None:  # before the reply: a reader's next request must find the count it implies
                board.publish(len(dispatcher.ops.handles.resume))
            if dispatcher.referred:  # a partial read of another worker's handle: its owner keeps the render
                if router is not None and router.forward(owner_of(req), req):
                    slot.end()
                    slot.progress(fq.taken, fq.taken - fq.held)
                    continue
                dispatcher.ops.refer_foreign_partials = False  # the owner cannot take it: keep it here
                try:
                    out = dispatcher.handle(req)
                finally:
                    dispatcher.ops.refer_foreign_partials = True
            if out is not None:
                try:
                    if not write_reply(fd, out) and dispatcher.last_opened is not None:
                        # The kernel dropped our OPEN reply (resent elsewhere): free the handle it carried.
                        dispatcher.ops.release(dispatcher.last_opened)
                except OSError as e:
                    if e.errno == errno.ENODEV:
                        return "unmounted"
                    raise
            slot.end()
            slot.progress(fq.taken, fq.taken - fq.held)
            if router is not None:
                router.answered(req)
            if dispatcher.destroyed:
                return "destroyed"
            if fq.held:
                # Held requests wait: only look (timeout 0) for newer ones, so they queue behind their namespace.
                dev_ready, inbox_ready = _wait(ep, fd, inbox, 0)
                burst = dev_ready
            else:  # nothing held: the idle wait is the look (it returns at once when more is pending)
                dev_ready = inbox_ready = False
    except _Gone:
        return "unmounted"
    finally:
        ep.close()


def _route(buf: bytes, router: Router, salt: int, board: Board | None = None,
           owner_reads: frozenset[int] = frozenset()) -> bool:
    """Forward `buf` to the worker that must answer it; False: answer it here.

    Only what needs another worker's state goes there: a READ at offset > 0 of another worker's handle (a
    continuation of a render kept there), unless the generation's board says the owner keeps no partly read render
    at all (then it is end of file, fuse/board.py).
    A READ at offset 0 renders afresh wherever it lands, except on the inodes in `owner_reads` (views whose
    per-container state lives in the worker): those go to the owner, and if it cannot take them they render here.
    A partial render of another worker's handle is handed to its owner after all (ops.Referred). A RELEASE is
    answered here and the owner told later, in a batch (Router.note_release). A lone reader's open/read/close of a
    stateless view thus costs no round trip between workers."""
    owner = owner_of(buf)
    if not owner or owner == salt:
        return False
    opcode, fh = _OP_FH(buf)
    if opcode == _OP_RELEASE:
        router.note_release(owner, fh)
        return False
    offset = _READ_OFFSET(buf)[0]
    if offset == 0:
        # A new render: here, unless the view keeps per-container state in the worker (the monotone counters of
        # /proc/stat, views/stat.py: a kept-open file re-read at 0 by whichever worker read it met two states,
        # and vmstat's 1 s samples showed no change, t3_realviews/test_rv_rereads.py). A partial render of
        # another worker's handle is handed to its owner after all (ops.Referred).
        return _OPEN_NODE(buf)[1] in owner_reads and router.forward(owner, buf)
    # Not "our own whole render of this handle had that length": the owner may have kept a newer partial render
    # since, whose continuation could start at that very offset. Only the board's zero is proof.
    if board is not None and board.kept_by(owner) == 0:
        return False
    return router.forward(owner, buf)


def _wait(ep: select.epoll, fd: int, inbox: int, timeout_ms: int) -> tuple[bool, bool]:
    """epoll_wait: (device readable, inbox readable). The stop pipe only wakes us (StopFlag holds the state)."""
    dev = box = False
    try:
        events = ep.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1)
    except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for a handler that raises
        return True, True
    for f, _ev in events:
        if f == fd:
            dev = True
        elif f == inbox:
            box = True
    return dev, box


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="pylxcfs-worker", description="pylxcfs FUSE worker (started by the "
                                 "supervisor; not for direct use)")
    ap.add_argument("--fd", type=int, required=True, help="/dev/fuse descriptor, already initialised")
    ap.add_argument("--ready-fd", type=int, default=-1, help="write one byte here when ready to serve")
    ap.add_argument("--parent", type=int, default=0, help="the supervisor's pid when we were started")
    ap.add_argument("--mount", default="", help="the mount point (lets a new supervisor find us)")
    ap.add_argument("--dev", default="", help="the mount's device MAJ:MIN (the connection)")
    ap.add_argument("--watchdog-fd", type=int, default=-1, help="the watchdog pipe, held open while we live")
    ap.add_argument("--stats-fd", type=int, default=-1, help="the stats page shared with the supervisor")
    ap.add_argument("--state-fd", type=int, default=-1,
                    help="the pool's shared state table (sharedtable.py: the loadavg history), made by the supervisor")
    ap.add_argument("--request-timeout", type=float, default=DEFAULT_DEADLINE_S,
                    help="give up on a forwarded request the owner has not answered after this many seconds")
    ap.add_argument("--config", default="{}", help="JSON: host_root, opts, debug")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None, board_page: tuple[mmap.mmap, int] | None = None) -> int:
    """Worker entry point: build the Renderer, signal readiness, serve until told to stop. `board_page`: the
    generation's board page and this worker's slot on it, when forked by the zygote (fuse/board.py)."""
    args = _parse(sys.argv[1:] if argv is None else argv)
    from pylxcfs.fuse.config import DaemonConfig
    from pylxcfs.log import setup_logging

    cfg = DaemonConfig.from_json(json.loads(args.config))
    setup_logging(cfg.debug, tag=f"worker[{os.getpid()}]")
    if args.parent and os.getppid() != args.parent:
        log.error("supervisor %d is gone before we started", args.parent)
        return 1
    # The connection, the watchdog pipe, the stats page and the state table must not leak into anything the
    # Renderer forks and execs; they stay at their numbers (a new supervisor copies them out of us by number).
    for fd in (args.fd, args.watchdog_fd, args.stats_fd, args.state_fd):
        if fd >= 0:
            os.set_inheritable(fd, False)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which tells us
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a log pipe whose reader died must not kill a server
    # `kill -USR1 <worker>` writes every thread's Python stack to the log: where a worker that seems stuck is.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    stop = StopFlag()
    stop.install(signal.SIGUSR2, signal.SIGTERM)
    renderer = cfg.make_renderer(args.state_fd)
    ops = Operations(renderer)
    renderer.stats.add_gauge("open_handles", ops.open_handles)  # published for `pylxcfs status` and the metrics
    dispatcher = Dispatcher(ops, debug=cfg.debug)
    slot = StatsSlot(args.stats_fd)
    router = Router(args.dev, ops.handles.salt, MODULE, args.request_timeout) if args.dev else None
    board: Board | None = None
    if router is not None:
        router.on_drop = ops.release
        ops.refer_foreign_partials = True
        if board_page is not None:
            board = Board(board_page[0], board_page[1], ops.handles.salt)
    owner_reads = frozenset(ops.tree.by_path[v].ino for v in OWNER_READ_VIEWS if v in ops.tree.by_path)
    renderer.start()
    if args.ready_fd >= 0:
        os.write(args.ready_fd, b"R")
        os.close(args.ready_fd)
    log.info("serving")
    try:
        why = serve(args.fd, dispatcher, stop, slot, router, board=board, owner_reads=owner_reads, spin_us=cfg.spin_us)
    finally:
        renderer.close()
        if router is not None:
            router.close()
    with contextlib.suppress(OSError):
        log.info("exiting (%s) after %d requests", why, dispatcher.requests)
    # A distinct status tells the supervisor the connection itself is gone (someone unmounted us).
    return EXIT_CONNECTION_GONE if why in ("unmounted", "destroyed") else 0


if __name__ == "__main__":
    raise SystemExit(main())
