"""The supervisor: owns the FUSE connection and keeps a pool of workers serving it.

Role: the process in the pidfile. It opens /dev/fuse, mounts it with mount(2), answers INIT itself, then
runs a pool of worker processes (fuse/worker.py) that inherit the descriptor, and never serves a request.
The workers of a generation are forked by that generation's zygote (fuse/zygote.py: a fresh interpreter
started from the code on disk, so they share its imported modules' pages) and re-parented to us (we are a
child subreaper), so they are our children as exec'd workers were. This module imports no render code.
The kernel connection outlives any single process:
a worker that dies leaves the mount alive, the requests it had taken are handed back to the kernel with
FUSE_NOTIFY_RESEND (Linux >= 6.9) and the other workers (and its replacement) answer them; a supervisor
that dies leaves its workers serving, and a supervisor started again on the same mount point adopts the
connection from them (fuse/adopt.py). libfuse cannot do this: its session answers every request with EIO
until it has itself seen INIT, which a second process on an existing connection never receives; hence the
small protocol implementation in fuse/protocol.py.

Generations: the workers started together (at start, after a reload, after an adoption) form one
generation; the older generation is retired (SIGUSR2: answer what you hold, exit) only once every worker
of the new one is ready, so no request is dropped. Stuck requests: each worker publishes the request it is
answering on a shared page; one in progress longer than the request timeout gets its worker killed (its
requests are resent to the others) and is logged with the requester's pid and container. A request that
was already resent once and gets stuck again is answered EIO by the supervisor itself.

Signals: SIGHUP starts a new generation (a new zygote) from the code on disk. SIGTERM/SIGINT unmount, stop
the workers and exit 0. If every process holding the connection dies (SIGKILL of all of them, OOM), a watchdog process
(forked before /dev/fuse was opened, so it never holds the connection) lazily unmounts the dead mount point.

Status: about once a second the supervisor writes supervisor.json into the status directory (statusdir.py:
every worker with its generation and the request it is in, crash, stuck-request and adoption counters);
each worker publishes its own per-container stats there, and `pylxcfs status` merges them all.
"""

from __future__ import annotations

import contextlib
import errno
import faulthandler
import json
import logging
import mmap
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from pylxcfs import sharedtable, statusdir, syscalls
from pylxcfs.fuse import mountpoint
from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.adopt import Adopted
from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.fuse.statspage import (
    EXIT_CONNECTION_GONE,
    PROGRESS,
    PROGRESS_AT,
    STATS,
    STATS_SIZE,
)
from pylxcfs.fuse.watchdog import FSTYPE, start_watchdog
from pylxcfs.fuse.zygote import Zygote

log = logging.getLogger(__name__)

FSNAME = "lxcfs"  # `mount` shows "lxcfs on MNT type fuse.lxcfs", which existing tooling greps for
READY_TIMEOUT_S = 30.0  # a worker that is not serving by then is killed
RETIRE_TIMEOUT_S = 30.0  # a retiring worker stuck longer than this in one request is killed
REQUEST_TIMEOUT_S = 2.0  # a request in progress longer than this: its worker is replaced
STOP_TIMEOUT_S = 5.0
# Once a generation of two or more workers serves in full its zygote is let go after this long: under load the
# workers write to most of the pages they share with it (reference counts), so it ends up holding ~9 MB of its own
# that no worker uses. A later spawn (a crash, a larger pool) starts a new one (~0.3 s more than a fork).
ZYGOTE_LINGER_S = 5.0
SIZE_CHECK_S = 1.0  # without --workers, how often the pool size is held against the CPUs we may run on
RESPAWN_MIN_INTERVAL_S = 0.2  # crash-loop brake once spawns have failed (a crashed worker is replaced within a second)
MAX_WORKERS = 64
DEFAULT_MAX_WORKERS = 4  # each worker is a Python process (~7.5 MB PSS, forked); more cores than this rarely help
EXIT_UNKNOWN = 255  # an adopted worker is not our child: its exit status went to its new parent


def default_workers() -> int:
    """The pool size: one worker per CPU we may run on, at least 1, at most DEFAULT_MAX_WORKERS."""
    try:
        n = len(os.sched_getaffinity(0))
    except OSError:
        n = os.cpu_count() or 1
    return max(1, min(n, DEFAULT_MAX_WORKERS))


@dataclass(slots=True)
class Worker:
    """One serving process: our child (forked by a zygote, re-parented to us) or adopted from a dead supervisor."""

    pid: int
    child: bool  # ours to reap; an adopted worker is known by its pidfd only
    ready_fd: int  # read end of its readiness pipe (-1 once ready)
    started: float
    gen: int
    stats: mmap.mmap | None = None
    pidfd: int = -1
    ready: bool = False
    retiring_since: float | None = None
    acted_on: int = 0  # unique of the stuck request already handled
    finished: int = -1  # its finished-request count when last seen to move (statspage.PROGRESS)
    finished_since_ns: int = 0  # when that was
    returncode: int | None = None

    @property
    def adopted(self) -> bool:
        """Started by a previous supervisor."""
        return not self.child

    def poll(self) -> int | None:
        """Exit status once it has exited, else None (a child is reaped here)."""
        if self.returncode is not None:
            return self.returncode
        if self.child:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: should not happen
                pid, status = self.pid, -1
            if pid == 0:
                return None
            self.returncode = os.waitstatus_to_exitcode(status) if status >= 0 else EXIT_UNKNOWN
        elif select.select([self.pidfd], [], [], 0)[0]:  # a pidfd polls readable once the process exited
            self.returncode = 0 if self.retiring_since is not None else EXIT_UNKNOWN
        return self.returncode

    def signal(self, sig: int) -> None:
        """Send `sig` (by pid to a child: unreaped, its pid cannot be reused; else through the pidfd)."""
        with contextlib.suppress(ProcessLookupError):
            if self.child or self.pidfd < 0:
                os.kill(self.pid, sig)
            else:
                signal.pidfd_send_signal(self.pidfd, sig)

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` s for it to exit; True if it did."""
        if self.pidfd >= 0:
            select.select([self.pidfd], [], [], timeout)
            return self.poll() is not None
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def snapshot(self) -> tuple[int, int, int, int, int, int]:
        """(busy_since_ns, unique, pid, opcode, requests, errors) from its stats page (zeros without one)."""
        if self.stats is None:
            return (0, 0, 0, 0, 0, 0)
        return STATS.unpack_from(self.stats, 0)

    def progress(self) -> tuple[int, int]:
        """(requests taken into its queue, requests finished), from its stats page (zeros without one)."""
        if self.stats is None:
            return (0, 0)
        return PROGRESS.unpack_from(self.stats, PROGRESS_AT)

    def close(self) -> None:
        """Release what the supervisor holds for it."""
        if self.ready_fd >= 0:
            os.close(self.ready_fd)
            self.ready_fd = -1
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1
        if self.stats is not None:
            self.stats.close()
            self.stats = None


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def mount_data(fd: int) -> str:
    """The option string for mount(2) of a FUSE filesystem (fs/fuse/inode.c: fuse_parse_param)."""
    return f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other"


def describe_requester(pid: int) -> str:
    """Who sent a request: the pid's pid namespace and cgroup (the container), for the log."""
    parts = []
    with contextlib.suppress(OSError):
        parts.append(f"pidns {os.stat(f'/proc/{pid}/ns/pid').st_ino}")
    with contextlib.suppress(OSError), open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
        # the unified line (0::/path) names the container on v2 and hybrid hosts; else the first controller's
        unified = [ln for ln in lines if ln.startswith("0::")]
        if unified or lines:
            parts.append("cgroup " + (unified or lines)[0].split(":", 2)[2])
    return ", ".join(parts) or "gone"


class Supervisor:
    """Mount (or adopt), negotiate, keep the pool, react to signals. `run()` returns the exit code."""

    def __init__(self, mnt: str, cfg: DaemonConfig, on_ready: Callable[[], None] | None = None,
                 notify: Callable[[str], object] | None = None, workers: int | None = None,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, adopted: Adopted | None = None,
                 zygote_linger_s: float = ZYGOTE_LINGER_S) -> None:
        self.mnt = mnt
        self.cfg = cfg
        self.on_ready = on_ready
        self.notify = notify or (lambda _msg: None)
        self.size = max(1, min(workers or default_workers(), MAX_WORKERS))
        # Without --workers the pool follows the CPUs we may run on (taskset, a cpuset or systemd's CPUAffinity
        # changed while we run): more workers than CPUs only take turns on one CPU, each turn a context switch
        # between two interpreters (measured pinned to one CPU: 2 workers served 2/3 of what 1 serves).
        self.auto_size = workers is None
        self.zygote_linger_s = zygote_linger_s
        self._full_since = 0.0  # when the current generation last became complete (its zygote is let go later)
        self._sized_at = 0.0
        self.request_timeout_s = request_timeout_s
        self._adopting = adopted
        self.fd = -1
        self.dev = ""
        self.workers: dict[int, Worker] = {}
        self.zygotes: dict[int, Zygote] = {}  # generation -> the zygote that forks its workers
        self.gen = 0
        self.init: P.InitResult | None = None
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self._watchdog_w = -1
        self._last_spawn = 0.0
        self._resend_ok = True
        self._startup_failures = 0
        self._served_once = False
        self.crashes = 0
        self.stuck_requests = 0  # requests found past the deadline (published as stuck_requests)
        self.adopted = 0  # connections taken over from a dead supervisor (published as adopted)
        self.connection_gone = False
        self.state_fd = -1  # the pool's shared state table (sharedtable.py: the loadavg history), every worker maps it
        # `pylxcfs status` and the metrics exporter read what this publishes (statusdir.py).
        self.status_pub = statusdir.SupervisorStatus(cfg.status_dir) if cfg.status_dir else None

    # -- mount and INIT ---------------------------------------------------------------------------
    def mount(self) -> None:
        """Open /dev/fuse, mount it at self.mnt and answer INIT; or take over an adopted connection."""
        if self._adopting is not None:
            self._take_over(self._adopting)
            return
        self._watchdog_w = start_watchdog(self.mnt)
        self.state_fd = sharedtable.create("pylxcfs-state")
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        syscalls.mount(FSNAME, self.mnt, FSTYPE, syscalls.MS_NOSUID | syscalls.MS_NODEV, mount_data(self.fd))
        try:
            self._answer_init()
        except BaseException:
            syscalls.umount2(self.mnt, syscalls.MNT_DETACH)
            raise
        entry = mountpoint.mount_at(self.mnt)
        if entry is not None:
            self.dev = entry.dev
            os.write(self._watchdog_w, f"dev={entry.dev}\n".encode())
        os.set_blocking(self.fd, False)  # workers poll; see fuse/worker.py
        syscalls.set_child_subreaper()  # only now: the watchdog must not become our child

    def _take_over(self, a: Adopted) -> None:
        self.fd, self.dev = a.fuse_fd, a.dev
        if a.watchdog_fd >= 0:
            self._watchdog_w = a.watchdog_fd  # the dead supervisor's watchdog waits on this pipe still
        else:
            self._watchdog_w = start_watchdog(self.mnt)
            os.write(self._watchdog_w, f"dev={a.dev}\n".encode())
        os.set_blocking(self.fd, False)
        # The dead supervisor's table, as its workers map it: the containers' loadavg history goes on.
        self.state_fd = a.state_fd if a.state_fd >= 0 else sharedtable.create("pylxcfs-state")
        a.state_fd = -1
        for pid, pidfd in a.workers:
            self.workers[pid] = Worker(pid, False, -1, time.monotonic(), gen=-1, pidfd=pidfd, ready=True)
        a.workers = []
        syscalls.set_child_subreaper()
        self.adopted += 1
        log.warning("adopted the connection of %s (device %s) from the workers %s of a dead supervisor; "
                    "replacing them", self.mnt, self.dev, sorted(self.workers))

    def _answer_init(self) -> None:
        while self.init is None:
            buf = os.read(self.fd, P.READ_BUFFER)
            h = P.decode_header(buf)
            if h.opcode != P.Opcode.INIT:
                os.write(self.fd, P.reply_error(h.unique, errno.EIO))
                continue
            init_in = P.decode_init(buf[P.IN_HEADER.size:h.length])
            body, self.init = P.negotiate_init(init_in)
            os.write(self.fd, P.reply(h.unique, body))
        log.info("mounted %s (FUSE %d.%d, kernel flags %#x, resend %s)", self.mnt, P.FUSE_KERNEL_VERSION,
                 self.init.minor, self.init.kernel_flags, "yes" if self.init.kernel_can_resend else "no")

    # -- workers ------------------------------------------------------------------------------------
    def worker_argv(self) -> list[str]:
        """The arguments every worker of this daemon runs with (the per-worker descriptors come on top)."""
        return ["--fd", str(self.fd), "--parent", str(os.getpid()), "--mount", self.mnt, "--dev", self.dev,
                "--watchdog-fd", str(self._watchdog_w), "--state-fd", str(self.state_fd),
                "--request-timeout", str(self.request_timeout_s),
                "--config", json.dumps(self.cfg.to_json())]

    def _zygote(self) -> Zygote:
        """The current generation's zygote, started from the code on disk if there is none yet."""
        z = self.zygotes.get(self.gen)
        if z is None or z.gone:
            if z is not None:
                self._drop_zygote(z)
            fds = tuple(fd for fd in (self.fd, self._watchdog_w, self.state_fd) if fd >= 0)
            z = Zygote(self.gen, self.worker_argv(), fds)
            self.zygotes[self.gen] = z
            log.info("started zygote %d (generation %d)", z.pid, z.gen)
        return z

    def _drop_zygote(self, z: Zygote) -> None:
        if self.zygotes.get(z.gen) is z:
            del self.zygotes[z.gen]
        z.close()

    def spawn(self) -> None:
        """Ask the current generation's zygote (fuse/zygote.py) for one more worker; it inherits the descriptor.
        The worker is recorded once the zygote has told its pid (_zygote_replies)."""
        z = self._zygote()
        rfd, wfd = os.pipe()
        sfd = os.memfd_create("pylxcfs-worker-stats", os.MFD_CLOEXEC)
        try:
            os.ftruncate(sfd, STATS_SIZE)
            stats = mmap.mmap(sfd, STATS_SIZE)
        except BaseException:
            for fd in (rfd, wfd, sfd):
                os.close(fd)
            raise
        z.request(rfd, wfd, stats, sfd)
        self._last_spawn = time.monotonic()

    def _zygote_replies(self, z: Zygote) -> None:
        for pid, rfd, stats, asked in z.receive():
            if pid <= 0:
                log.error("zygote %d could not fork a worker", z.pid)
                os.close(rfd)
                stats.close()
                self._startup_failures += 1
                continue
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                pidfd = -1  # already gone: reaped (and its death counted) by _reap
            w = Worker(pid, True, rfd, asked, gen=z.gen, stats=stats, pidfd=pidfd)
            self.workers[pid] = w
            log.info("started worker %d (generation %d, forked by zygote %d)", pid, w.gen, z.pid)

    def _pending(self) -> int:
        z = self.zygotes.get(self.gen)
        return len(z.pending) if z is not None and not z.gone else 0

    def _check_zygotes(self) -> None:
        """A zygote that died, or does not answer, is dropped (and counted as a failed start when it owed us a
        worker); the next spawn starts a new one."""
        now = time.monotonic()
        for z in list(self.zygotes.values()):
            code = z.poll()
            asked = z.oldest_request()
            if code is None and not z.gone and (asked is None or now - asked <= READY_TIMEOUT_S):
                continue
            if code is None and not z.gone:
                log.error("zygote %d has not forked a worker in %.0f s: killing it", z.pid, READY_TIMEOUT_S)
            else:
                self._zygote_replies(z)  # whatever it answered before it went
                if z.gen == self.gen:
                    log.warning("zygote %d of generation %d exited (%s)", z.pid, z.gen,
                                "status unknown" if code is None else f"status {code}")
            if z.pending:
                self._startup_failures += 1
            self._drop_zygote(z)

    def _drop_old_zygotes(self) -> None:
        for z in [z for z in self.zygotes.values() if z.gen != self.gen]:
            log.info("zygote %d of generation %d let go", z.pid, z.gen)
            self._drop_zygote(z)

    def _reap_orphans(self) -> None:
        """We are a child subreaper: a worker's own children orphaned by its death come to us. Reap the zombies
        among our children that are neither workers nor zygotes (those are reaped where they are polled)."""
        known = set(self.workers) | {z.pid for z in self.zygotes.values()}
        with contextlib.suppress(OSError):
            for tid in os.listdir("/proc/self/task"):
                with contextlib.suppress(OSError), open(f"/proc/self/task/{tid}/children") as f:
                    for pid in (int(x) for x in f.read().split()):
                        if pid not in known and _zombie(pid):
                            with contextlib.suppress(ChildProcessError):
                                os.waitpid(pid, os.WNOHANG)

    def _serving(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.retiring_since is None]

    def _retire(self, w: Worker) -> None:
        if w.retiring_since is None:
            w.retiring_since = time.monotonic()
            log.info("retiring worker %d", w.pid)
            w.signal(signal.SIGUSR2)

    def resend(self) -> None:
        """FUSE_NOTIFY_RESEND: requests taken by a dead worker go back to the queue (Linux >= 6.9). On older
        kernels (EINVAL) they stay unanswered: their readers block until killed (see docs/design-fuse.md)."""
        if not self._resend_ok:
            return
        try:
            os.write(self.fd, P.notify(P.NotifyCode.RESEND))
        except OSError as e:
            self._resend_ok = False
            log.error("kernel refused FUSE_NOTIFY_RESEND (%s): requests a dead worker had taken will hang "
                      "until their readers are killed", os.strerror(e.errno or 0))

    def _ready(self, w: Worker) -> None:
        try:
            got = os.read(w.ready_fd, 1)
        except OSError:
            got = b""
        os.close(w.ready_fd)
        w.ready_fd = -1
        if not got:  # EOF: died before it was ready; the reaper handles it
            return
        w.ready = True
        self._startup_failures = 0
        log.info("worker %d ready in %.0f ms", w.pid, (time.monotonic() - w.started) * 1000)
        if not self._served_once:
            self._served_once = True
            syscalls.malloc_trim()  # start-up's garbage (argument parsing, the mount) need not stay resident
            if self.on_ready is not None:
                self.on_ready()  # the CLI reports readiness (sd_notify READY=1 with MAINPID, the waiting parent)
                self.on_ready = None
        self._finish_generation()

    def _finish_generation(self) -> None:
        """Once the whole current generation serves, retire the older ones (reload, adoption)."""
        current = [w for w in self._serving() if w.gen == self.gen]
        older = [w for w in self._serving() if w.gen < self.gen]
        if older and len(current) >= self.size and all(w.ready for w in current):
            for w in older:
                self._retire(w)
            self._drop_old_zygotes()
            self.notify("READY=1\nSTATUS=serving")  # after a reload or an adoption

    def _reap(self) -> None:
        self._check_zygotes()
        self._reap_orphans()
        for w in list(self.workers.values()):
            code = w.poll()
            if code is None:
                continue
            del self.workers[w.pid]
            w.close()
            if w.retiring_since is not None and code in (0, EXIT_CONNECTION_GONE):
                log.info("worker %d retired", w.pid)
                continue
            if code == EXIT_CONNECTION_GONE:
                # The kernel ended the connection (an external umount of the last mount, or an abort via
                # fusectl): nothing left to serve, so the daemon ends too, as C lxcfs does.
                log.warning("worker %d: the FUSE connection is gone (unmounted?): shutting down", w.pid)
                self.connection_gone = True
                continue
            self.crashes += 1
            if not w.ready:
                self._startup_failures += 1
            how = "status unknown (adopted)" if code == EXIT_UNKNOWN else (
                f"signal {-code}" if code < 0 else f"exit {code}")
            log.warning("worker %d died (%s)%s", w.pid, how, "" if w.ready else " before it was ready")
            # Whatever it had read and not answered would wait forever: have the kernel queue it again.
            self.resend()
            if not w.ready and w.gen == self.gen and self._startup_failures >= 3:
                older = [x for x in self._serving() if x.gen < self.gen]
                if older:  # a reload whose code cannot start: keep the serving generation
                    log.error("reload failed: workers %s keep serving", sorted(x.pid for x in older))
                    for x in [x for x in self._serving() if x.gen == self.gen]:
                        x.signal(signal.SIGKILL)
                    self.gen = max(x.gen for x in older)
                    self._drop_old_zygotes()

    def _let_zygote_go(self) -> None:
        """The current generation's zygote ends zygote_linger_s after the generation serves in full, when the pool
        has two workers or more: the others serve while a replacement waits for a fresh zygote (~0.3 s, ~1.5 s
        under `stress-ng --cpu 2`). A lone worker's zygote stays: nobody would serve until its replacement does."""
        z = self.zygotes.get(self.gen)
        full = self.size >= 2 and z is not None and not z.gone and not z.pending and (
            sum(1 for w in self._serving() if w.gen == self.gen and w.ready) >= self.size)
        if not full:
            self._full_since = 0.0
            return
        now = time.monotonic()
        if not self._full_since:
            self._full_since = now
        elif now - self._full_since >= self.zygote_linger_s and z is not None:
            log.info("zygote %d let go: generation %d serves in full (a later spawn starts a new one)", z.pid,
                     z.gen)
            self._drop_zygote(z)
            self._full_since = 0.0

    def _follow_cpus(self) -> None:
        """Without --workers: resize the pool to the CPUs we may run on (checked every SIZE_CHECK_S). A shrink
        retires the youngest workers."""
        now = time.monotonic()
        if not self.auto_size or now - self._sized_at < SIZE_CHECK_S:
            return
        self._sized_at = now
        n = default_workers()
        if n == self.size:
            return
        log.info("pool size %d -> %d (CPUs we may run on: %d)", self.size, n, len(os.sched_getaffinity(0)))
        self.size = n
        current = sorted((w for w in self._serving() if w.gen == self.gen), key=lambda w: w.started, reverse=True)
        for w in current[:max(0, len(current) - n)]:
            self._retire(w)

    def _ensure_workers(self) -> None:
        missing = self.size - sum(1 for w in self._serving() if w.gen == self.gen) - self._pending()
        if missing <= 0:
            return
        if self._startup_failures == 0:
            for _ in range(missing):
                self.spawn()
            return
        # Workers that cannot even start (broken code on disk) are retried gently, not in a tight loop.
        interval = RESPAWN_MIN_INTERVAL_S if self._startup_failures < 3 else 1.0
        if time.monotonic() - self._last_spawn >= interval:
            self.spawn()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            if not w.ready and now - w.started > READY_TIMEOUT_S:
                log.error("worker %d not ready after %.0f s: killing it", w.pid, READY_TIMEOUT_S)
                w.signal(signal.SIGKILL)
            if w.retiring_since is not None and now - w.retiring_since > RETIRE_TIMEOUT_S:
                log.error("retiring worker %d stuck for %.0f s: killing it", w.pid, RETIRE_TIMEOUT_S)
                w.signal(signal.SIGKILL)
        self._check_stuck()

    def _check_stuck(self) -> None:
        """A request in progress past the deadline: kill its worker (the others get its requests back through
        FUSE_NOTIFY_RESEND), or, if that request had been resent once already, answer it EIO ourselves."""
        now_ns = time.monotonic_ns()
        limit_ns = int(self.request_timeout_s * 1e9)
        for w in list(self.workers.values()):
            since, unique, pid, opcode, _n, _e = w.snapshot()
            if not since or now_ns - since < limit_ns or unique == w.acted_on:
                continue
            if w.snapshot()[:2] != (since, unique):  # it moved on while we looked
                continue
            w.acted_on = unique
            self.stuck_requests += 1
            try:
                op = P.Opcode(opcode).name
            except ValueError:
                op = str(opcode)
            who = describe_requester(pid)
            resent = bool(unique & P.FUSE_UNIQUE_RESEND)
            log.error("worker %d stuck %.1f s in %s (unique %#x) for pid %d (%s): %s", w.pid,
                      (now_ns - since) / 1e9, op, unique, pid, who,
                      "already resent once, answering EIO and replacing the worker" if resent
                      else "replacing the worker; its requests go to the others")
            if resent:
                with contextlib.suppress(OSError):  # ENOENT: it was answered meanwhile
                    os.write(self.fd, P.reply_error(unique, errno.EIO))
            w.signal(signal.SIGKILL)
        self._check_held(now_ns, limit_ns)

    def _check_held(self, now_ns: int, limit_ns: int) -> None:
        """A worker that holds requests in its queue (taken > finished) but has finished none for the request timeout,
        with no request in progress (that case is _check_stuck's), is replaced: its requests are resent to the
        others. Nothing the worker does between requests may take that long, so this is a bug or a stop (SIGSTOP
        between two requests), never load: a loaded worker still finishes one request per turn."""
        for w in list(self.workers.values()):
            taken, finished = w.progress()
            if finished != w.finished or taken <= finished:
                w.finished, w.finished_since_ns = finished, now_ns
                continue
            if w.snapshot()[0] or now_ns - w.finished_since_ns < limit_ns:
                continue
            self.stuck_requests += 1
            log.error("worker %d holds %d request(s) and finished none for %.1f s: replacing the worker; its "
                      "requests go to the others", w.pid, taken - finished, (now_ns - w.finished_since_ns) / 1e9)
            w.finished_since_ns = now_ns  # once
            w.signal(signal.SIGKILL)

    # -- main loop --------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for s in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._on_signal)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # as in the workers: its Python stack, in the log

    def run(self) -> int:
        """Mount and serve until SIGTERM/SIGINT; returns the exit code (0 after a clean shutdown)."""
        self._install_signals()
        self.mount()
        try:
            if self._adopting is not None:
                self.gen = 0  # the adopted workers are generation -1: retired once ours serve
                self._served_once = True  # they serve already: readiness is reported at once
                if self.on_ready is not None:
                    self.on_ready()
                    self.on_ready = None
            self._ensure_workers()
            while True:
                fds = [self._wake_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
                fds += [w.pidfd for w in self.workers.values() if w.pidfd >= 0]
                fds += [z.fileno() for z in self.zygotes.values() if not z.gone]
                try:
                    readable, _, _ = select.select(fds, [], [], 0.25)
                except InterruptedError:
                    readable = []
                if self._wake_r in readable:
                    try:
                        while os.read(self._wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                for z in list(self.zygotes.values()):
                    if not z.gone and z.fileno() in readable:
                        self._zygote_replies(z)
                for w in list(self.workers.values()):
                    if w.ready_fd >= 0 and w.ready_fd in readable:
                        self._ready(w)
                sigs, self._signals = self._signals, []
                self._reap()
                if self.connection_gone:
                    return self.shutdown()
                if signal.SIGTERM in sigs or signal.SIGINT in sigs:
                    log.info("signal %s: shutting down", "TERM" if signal.SIGTERM in sigs else "INT")
                    return self.shutdown()
                if signal.SIGHUP in sigs:
                    self.reload()
                self._check_deadlines()
                self._follow_cpus()
                self._ensure_workers()
                self._finish_generation()
                self._let_zygote_go()
                if self.status_pub is not None:
                    self.status_pub.tick(self)
        except BaseException:
            self.shutdown()
            raise

    def reload(self) -> None:
        """SIGHUP: a new generation from the code on disk replaces every serving worker once it all serves."""
        self.notify("RELOADING=1")
        for p in [w for w in self._serving() if not w.ready]:  # a reload in progress: restart it
            p.signal(signal.SIGKILL)
        z = self.zygotes.get(self.gen)
        if z is not None and z.pending:  # its forks are not wanted any more
            self._drop_zygote(z)
        self.gen += 1
        self._startup_failures = 0
        log.info("reload: generation %d replaces workers %s", self.gen, sorted(w.pid for w in self._serving()))

    def shutdown(self) -> int:
        """Unmount, stop the workers, close the connection, tell the watchdog all is well."""
        self.notify("STOPPING=1")
        if self.fd >= 0:
            try:
                syscalls.umount2(self.mnt, 0)
            except OSError as e:
                if e.errno == errno.EBUSY:
                    syscalls.umount2(self.mnt, syscalls.MNT_DETACH)
                elif e.errno != errno.EINVAL:  # EINVAL: not mounted (someone unmounted it already)
                    log.error("unmount %s: %s", self.mnt, e)
        for z in list(self.zygotes.values()):
            self._drop_zygote(z)
        for w in self.workers.values():
            w.signal(signal.SIGCONT)  # a stopped worker cannot act on SIGUSR2
            w.signal(signal.SIGUSR2)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for w in list(self.workers.values()):
            if not w.wait(max(0.0, deadline - time.monotonic())):
                w.signal(signal.SIGKILL)
                w.wait(5)
            w.close()
        self.workers.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.state_fd >= 0:
            os.close(self.state_fd)
            self.state_fd = -1
        if self._watchdog_w >= 0:
            try:
                os.write(self._watchdog_w, b"clean\n")
            finally:
                os.close(self._watchdog_w)
                self._watchdog_w = -1
        if self.status_pub is not None:
            self.status_pub.close()
        log.info("unmounted %s; bye", self.mnt)
        return 0
