"""The supervisor: owns the FUSE connection and keeps a worker serving it.

Role: the process in the pidfile. It opens /dev/fuse, mounts it with mount(2), answers INIT itself,
then runs worker processes (fuse/wire.py, each a fresh `python -m pylxcfs.fuse.wire` that inherits
the descriptor) and never serves a request. Because the supervisor holds the descriptor, the kernel
connection outlives any worker: a worker that dies leaves the mount alive (no ENOTCONN), the
requests it had taken are handed back to the kernel with FUSE_NOTIFY_RESEND (Linux >= 6.9) and a new
worker answers them. libfuse cannot do this: its session answers every request with EIO until it
has itself seen INIT, which a second process on an existing connection never receives; hence the
small protocol implementation in fuse/protocol.py.

Signals: SIGHUP starts a worker from the code on disk, and once it is ready tells the old one to stop
reading (SIGUSR2); the old one answers what it took and exits: no request is dropped. SIGTERM/SIGINT
unmount, stop the workers and exit 0. If the supervisor itself is SIGKILLed, its workers die with it
(PR_SET_PDEATHSIG), the connection drops, and a watchdog process (forked before /dev/fuse was opened,
so it never holds the connection) lazily unmounts the dead mount point.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pylxcfs import statusdir, syscalls
from pylxcfs.fuse import mountpoint
from pylxcfs.fuse import protocol as P
from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.fuse.watchdog import FSTYPE, start_watchdog
from pylxcfs.fuse.wire import EXIT_CONNECTION_GONE

log = logging.getLogger(__name__)

FSNAME = "lxcfs"  # `mount` shows "lxcfs on MNT type fuse.lxcfs", which existing tooling greps for
READY_TIMEOUT_S = 30.0  # a worker that is not serving by then is killed
RETIRE_TIMEOUT_S = 30.0  # a retiring worker stuck longer than this in one request is killed
STOP_TIMEOUT_S = 5.0
RESPAWN_MIN_INTERVAL_S = 0.2  # crash-loop brake; a crashed worker is replaced within a second


@dataclass(slots=True)
class Worker:
    """One serving process."""

    popen: subprocess.Popen[bytes]
    ready_fd: int  # read end of its readiness pipe (-1 once ready)
    started: float
    ready: bool = False
    retiring_since: float | None = None
    replaces: list[int] = field(default_factory=list)  # pids to retire once this one is ready

    @property
    def pid(self) -> int:
        """The worker's pid."""
        return self.popen.pid


def mount_data(fd: int) -> str:
    """The option string for mount(2) of a FUSE filesystem (fs/fuse/inode.c: fuse_parse_param)."""
    return f"fd={fd},rootmode=40000,user_id=0,group_id=0,allow_other"


class Supervisor:
    """Mount, negotiate, keep workers, react to signals. `run()` returns the exit code."""

    def __init__(self, mnt: str, cfg: DaemonConfig, on_ready: Callable[[], None] | None = None,
                 notify: Callable[[str], object] | None = None) -> None:
        self.mnt = mnt
        self.cfg = cfg
        self.on_ready = on_ready
        self.notify = notify or (lambda _msg: None)
        self.fd = -1
        self.workers: dict[int, Worker] = {}
        self.init: P.InitResult | None = None
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self._watchdog_w = -1
        self._last_spawn = 0.0
        self._resend_ok = True
        self._startup_failures = 0
        self.crashes = 0
        self.connection_gone = False
        # `pylxcfs status` and the metrics exporter read what this publishes (statusdir.py).
        self.status = statusdir.SupervisorStatus(cfg.status_dir) if cfg.status_dir else None

    # -- mount and INIT ---------------------------------------------------------------------------
    def mount(self) -> None:
        """Open /dev/fuse, mount it at self.mnt and answer INIT."""
        self._watchdog_w = start_watchdog(self.mnt)
        self.fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        syscalls.mount(FSNAME, self.mnt, FSTYPE, syscalls.MS_NOSUID | syscalls.MS_NODEV, mount_data(self.fd))
        try:
            self._answer_init()
        except BaseException:
            syscalls.umount2(self.mnt, syscalls.MNT_DETACH)
            raise
        entry = mountpoint.mount_at(self.mnt)
        if entry is not None:
            os.write(self._watchdog_w, f"dev={entry.dev}\n".encode())
        os.set_blocking(self.fd, False)  # workers poll; see fuse/wire.py

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
    def spawn(self, replaces: list[int] | None = None) -> Worker:
        """Start a worker from the code on disk; it inherits the /dev/fuse descriptor."""
        rfd, wfd = os.pipe()
        argv = [sys.executable, "-m", "pylxcfs.fuse.wire", "--fd", str(self.fd), "--ready-fd", str(wfd),
                "--parent", str(os.getpid()), "--config", json.dumps(self.cfg.to_json())]
        try:
            popen = subprocess.Popen(argv, pass_fds=(self.fd, wfd), close_fds=True, stdin=subprocess.DEVNULL)
        finally:
            os.close(wfd)
        w = Worker(popen, rfd, time.monotonic(), replaces=list(replaces or []))
        self.workers[w.pid] = w
        self._last_spawn = time.monotonic()
        log.info("started worker %d%s", w.pid, f" to replace {w.replaces}" if w.replaces else "")
        return w

    def _serving(self) -> list[Worker]:
        return [w for w in self.workers.values() if w.retiring_since is None]

    def _retire(self, w: Worker) -> None:
        if w.retiring_since is None:
            w.retiring_since = time.monotonic()
            log.info("retiring worker %d", w.pid)
            self._kill(w, signal.SIGUSR2)

    @staticmethod
    def _kill(w: Worker, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(w.pid, sig)

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
        first = not any(x.ready for x in self.workers.values())
        w.ready = True
        self._startup_failures = 0
        log.info("worker %d ready in %.0f ms", w.pid, (time.monotonic() - w.started) * 1000)
        for pid in w.replaces:
            old = self.workers.get(pid)
            if old is not None:
                self._retire(old)
        if first and self.on_ready is not None:
            self.on_ready()  # the CLI reports readiness (sd_notify READY=1 with MAINPID, the waiting parent)
            self.on_ready = None
        else:
            self.notify("READY=1\nSTATUS=serving")  # after a reload or a respawn

    def _reap(self) -> None:
        for w in list(self.workers.values()):
            code = w.popen.poll()
            if code is None:
                continue
            del self.workers[w.pid]
            if w.ready_fd >= 0:
                os.close(w.ready_fd)
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
            log.warning("worker %d died (%s)%s", w.pid, f"signal {-code}" if code < 0 else f"exit {code}",
                        "" if w.ready else " before it was ready")
            # Whatever it had read and not answered would wait forever: have the kernel queue it again.
            self.resend()
            for pid in w.replaces:  # a failed reload: the old workers keep serving
                old = self.workers.get(pid)
                if old is not None and old.retiring_since is None:
                    log.error("reload failed: worker %d keeps serving", pid)

    def _ensure_worker(self) -> None:
        if self._serving():
            return
        # A worker that cannot even start (broken code on disk) is retried once a second, not in a tight loop.
        interval = RESPAWN_MIN_INTERVAL_S if self._startup_failures < 3 else 1.0
        if time.monotonic() - self._last_spawn >= interval:
            self.spawn()

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for w in list(self.workers.values()):
            if not w.ready and now - w.started > READY_TIMEOUT_S:
                log.error("worker %d not ready after %.0f s: killing it", w.pid, READY_TIMEOUT_S)
                self._kill(w, signal.SIGKILL)
            if w.retiring_since is not None and now - w.retiring_since > RETIRE_TIMEOUT_S:
                log.error("retiring worker %d stuck for %.0f s: killing it", w.pid, RETIRE_TIMEOUT_S)
                self._kill(w, signal.SIGKILL)

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

    def run(self) -> int:
        """Mount and serve until SIGTERM/SIGINT; returns the exit code (0 after a clean shutdown)."""
        self._install_signals()
        self.mount()
        try:
            self.spawn()
            while True:
                fds = [self._wake_r] + [w.ready_fd for w in self.workers.values() if w.ready_fd >= 0]
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
                self._ensure_worker()
                if self.status is not None:
                    self.status.tick(self)
        except BaseException:
            self.shutdown()
            raise

    def reload(self) -> None:
        """SIGHUP: a new worker from the code on disk replaces every serving one once it is ready."""
        self.notify("RELOADING=1")
        olds = [w.pid for w in self._serving() if w.ready]
        for p in [w for w in self._serving() if not w.ready]:  # a reload in progress: restart it
            olds.extend(x for x in p.replaces if x not in olds)
            self._kill(p, signal.SIGKILL)
        log.info("reload: replacing workers %s", olds)
        self.spawn(replaces=olds)

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
        for w in self.workers.values():
            self._kill(w, signal.SIGUSR2)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for w in list(self.workers.values()):
            try:
                w.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(w, signal.SIGKILL)
                w.popen.wait()
        self.workers.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._watchdog_w >= 0:
            try:
                os.write(self._watchdog_w, b"clean\n")
            finally:
                os.close(self._watchdog_w)
                self._watchdog_w = -1
        if self.status is not None:
            self.status.close()
        log.info("unmounted %s; bye", self.mnt)
        return 0
