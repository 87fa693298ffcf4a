"""The sysinfo agent: a long-lived process that holds containers' seccomp listener fds and answers their
sysinfo(2) calls (docs/sysinfo.md).

Receiving (OCI runtime-spec, config-linux.md `listenerPath`): runc >= 1.1 and crun connect to our unix socket
once per container, send the container state JSON (`ContainerProcessState`: fds, pid, metadata, state) with the
listener fd as SCM_RIGHTS, and close. The same socket answers `PING` (is an agent there: lxcfs-runc and the daemon
ask before relying on it) and `RELOAD <config json>` from root.

Answering: one thread per listener fd (per container) polls it, receives a notification, resolves the caller with
the daemon's Resolver, computes the figures (values.py), writes the struct into the caller and answers val 0.
The write goes through /proc/<pid>/mem opened BEFORE the first SECCOMP_IOCTL_NOTIF_ID_VALID: once that check
passes, the descriptor is the caller's memory and not that of a process that reused its pid; a second check after
the write confirms the caller is still waiting before we answer. A buffer that is not writable in the caller's
maps gets CONTINUE (the kernel then fails the call with EFAULT itself, as without us). A slow caller (its buffer
on a userfaultfd or FUSE mapping) stalls only its own container's thread. Anything we cannot answer (another
architecture or ABI, a caller outside any container, a cgroup read failing) gets SECCOMP_USER_NOTIF_FLAG_CONTINUE:
the kernel runs the real call, so the caller sees host figures, never an error.

Lifetime: the agent is not part of the FUSE daemon's process tree (it detaches at start), so a worker crash, a
supervisor SIGHUP or the daemon's stop or death never closes a listener fd. SIGHUP (or RELOAD) starts a new agent
from the code on disk, pauses the threads, hands it the listening socket, the lock and every listener fd over a
SOCK_SEQPACKET pair, and exits once the new one says READY; if the new one fails, the old one resumes. Meanwhile
the kernel queues the containers' calls: none fails. A second process, the fd keeper (keeper.py), holds a copy of
the socket, the lock and every listener and is told of each notification before it is handled: if the agent is
killed, the keeper hands all of it, with the calls taken but unanswered, to a new agent; if the keeper dies, the
agent starts another. SIGTERM exits only when no container holds a listener on us:
closing a live listener makes the kernel fail every later sysinfo of that container with ENOSYS.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pylxcfs import syscalls
from pylxcfs.errors import NotInContainer, ProcessGone
from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.log import RateLimited, setup_logging
from pylxcfs.sysinfo import abi
from pylxcfs.sysinfo.values import compute

log = logging.getLogger("pylxcfs.sysinfo")

ACCEPT_TIMEOUT_S = 5.0  # a runtime sends its state and closes at once; a silent peer is dropped after this
PAUSE_TIMEOUT_S = 5.0  # a reload waits this long for threads to finish the notification they hold
TAKEOVER_TIMEOUT_S = 30.0  # a new agent that is not READY by then is killed and the old one resumes
MAX_STATE_BYTES = 1 << 20
SECCOMP_NOTIFY_LINK = "anon_inode:seccomp notify"


@dataclass(slots=True)
class Listener:
    """One container's listener fd and what the runtime told us about it."""

    fd: int
    cid: str
    init_pid: int
    bundle: str = ""
    answered: int = 0
    continued: int = 0
    thread: threading.Thread | None = None
    pending: list[dict[str, int]] = field(default_factory=list)  # received by a dead agent, answered first

    def describe(self) -> dict[str, Any]:
        """The takeover manifest entry (without the fd, which travels as SCM_RIGHTS)."""
        return {"cid": self.cid, "init_pid": self.init_pid, "bundle": self.bundle}


@dataclass(slots=True)
class Stats:
    """Counters (PING reports them; tests read them)."""

    answered: int = 0
    continued: int = 0
    gone: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


def is_listener_fd(fd: int) -> bool:
    """True if fd is a seccomp user-notification listener."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == SECCOMP_NOTIFY_LINK
    except OSError:
        return False


def notif_to_dict(n: syscalls.SeccompNotif) -> dict[str, int]:
    """What the keeper needs to have a notification answered by the next agent."""
    return {"id": int(n.id), "pid": int(n.pid), "arch": int(n.data.arch), "nr": int(n.data.nr),
            "arg0": int(n.data.args[0])}


def notif_from_dict(d: dict[str, int]) -> syscalls.SeccompNotif:
    """Inverse of notif_to_dict."""
    n = syscalls.SeccompNotif()
    n.id, n.pid = d["id"], d["pid"]
    n.data.arch, n.data.nr = d["arch"], d["nr"]
    n.data.args[0] = d["arg0"]
    return n


def parse_maps_writable(maps: str, addr: int, size: int) -> bool:
    """True if [addr, addr+size) lies in writable mappings of a /proc/<pid>/maps text (pure)."""
    need = addr
    end = addr + size
    for line in maps.splitlines():
        rng, _, rest = line.partition(" ")
        lo_s, _, hi_s = rng.partition("-")
        try:
            lo, hi = int(lo_s, 16), int(hi_s, 16)
        except ValueError:
            continue
        if hi <= need:
            continue
        if lo > need or rest[1:2] != "w":
            return False
        need = hi
        if need >= end:
            return True
    return False


class Agent:
    """See the module docstring. `serve()` returns the exit code."""

    def __init__(self, sock_path: str, cfg: DaemonConfig) -> None:
        self.sock_path = sock_path
        self.cfg = cfg
        self.renderer = cfg.make_renderer()
        self.listeners: dict[int, Listener] = {}
        self.lock = threading.Lock()
        self.stats = Stats()
        self.sock: socket.socket | None = None
        self.lock_fd = -1
        self._pause = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._signals: list[int] = []
        self._reload_cfg: DaemonConfig | None = None
        self._warn = RateLimited(log, 60.0)
        self._once: set[object] = set()
        self._machine = os.uname().machine
        self.keeper: socket.socket | None = None
        self.keeper_proc: subprocess.Popen[bytes] | None = None
        self._klock = threading.Lock()
        # Notifications received and not yet answered, as their R messages (under _klock): a keeper started while
        # we hold some is told of them, or a kill of this agent right after the old keeper's would lose them (their
        # R went to the dead keeper, or nowhere while none ran) and the callers would wait for ever.
        self._held: dict[tuple[int, int], bytes] = {}

    # ---- setup --------------------------------------------------------------------------------------------
    def bind(self) -> None:
        """Take the lock (one agent per socket), bind the socket (a stale file from a dead agent is replaced)."""
        lock_path = self.sock_path + ".pid"
        self.lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SystemExit(f"pylxcfs-sysinfo: another agent holds {lock_path}") from None
        self._write_pid()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock_path)  # we hold the lock: no live agent owns it
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        old = os.umask(0o077)
        try:
            s.bind(self.sock_path)
        finally:
            os.umask(old)
        s.listen(128)
        self.sock = s

    def _write_pid(self) -> None:
        os.ftruncate(self.lock_fd, 0)
        os.pwrite(self.lock_fd, f"{os.getpid()}\n".encode(), 0)

    def check_kernel(self) -> None:
        """Refuse to run where user notification or CONTINUE is missing (nothing could be answered safely)."""
        try:
            sizes = syscalls.seccomp_notif_sizes(self._machine)
        except OSError as e:
            raise SystemExit(f"pylxcfs-sysinfo: seccomp user notification unavailable ({e})") from None
        want = syscalls.NOTIF_SIZES
        if sizes[0] < want[0] or sizes[1] < want[1]:
            raise SystemExit(f"pylxcfs-sysinfo: kernel seccomp notify sizes {sizes} smaller than ours {want}")
        rel = os.uname().release.split(".")
        try:
            major, minor = int(rel[0]), int("".join(ch for ch in rel[1] if ch.isdigit()) or 0)
        except (IndexError, ValueError):
            major, minor = 0, 0
        if (major, minor) < (5, 5):
            raise SystemExit(f"pylxcfs-sysinfo: kernel {os.uname().release} lacks SECCOMP_USER_NOTIF_FLAG_CONTINUE "
                             "(Linux >= 5.5)")

    # ---- listeners ----------------------------------------------------------------------------------------
    def add(self, li: Listener) -> None:
        """Register a listener and start its thread."""
        with self.lock:
            self.listeners[li.fd] = li
        self._tell_keeper(b"L" + json.dumps(dict(li.describe(), key=li.fd)).encode(), [li.fd])
        li.thread = threading.Thread(target=self._serve_listener, args=(li,), name=f"sysinfo-{li.cid}",
                                     daemon=True)
        li.thread.start()
        log.info("container %s (init %d): listener fd %d", li.cid, li.init_pid, li.fd)

    def _drop(self, li: Listener) -> None:
        with self.lock:
            self.listeners.pop(li.fd, None)
        self._tell_keeper(b"X" + json.dumps({"key": li.fd}).encode())
        os.close(li.fd)
        log.info("container %s: gone (answered %d, continued %d)", li.cid, li.answered, li.continued)

    def _serve_listener(self, li: Listener) -> None:
        poller = select.poll()
        poller.register(li.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        pending, li.pending = li.pending, []
        for d in pending:  # taken by an agent that died before answering: the caller still waits
            self._handle(li, notif_from_dict(d))
        while not self._pause.is_set():
            try:
                events = poller.poll(1000)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd != li.fd:
                    continue
                if ev & select.POLLIN:
                    self._one(li)
                elif ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL):
                    # POLLHUP: no task uses the filter any more (the container is gone).
                    self._drop(li)
                    return

    def _one(self, li: Listener) -> None:
        try:
            n = syscalls.notif_recv(li.fd)
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EINTR):  # ENOENT: the caller was interrupted meanwhile
                self._warn.warning(("recv", e.errno), "container %s: receive failed: %s", li.cid, e)
            return
        self._handle(li, n)

    def _handle(self, li: Listener, n: syscalls.SeccompNotif) -> None:
        self._took(li, n)
        try:
            self._answer(li, n)
        except Exception as e:  # whatever went wrong, the caller must not wait forever
            self._warn.warning(("bug", type(e).__name__), "container %s: %s: %s; letting the kernel answer",
                               li.cid, type(e).__name__, e)
            with contextlib.suppress(OSError):
                self._continue(li, n.id, "error")
        self._done(li, n)

    def _took(self, li: Listener, n: syscalls.SeccompNotif) -> None:
        """A notification received: the keeper learns of it before we act on it (if we die now, the next agent
        answers it), and so does any keeper started before we answer it (_sync_keeper)."""
        received = b"R" + json.dumps(dict(notif_to_dict(n), key=li.fd)).encode()
        with self._klock:
            self._held[(li.fd, int(n.id))] = received
        self._tell_keeper(received)

    def _done(self, li: Listener, n: syscalls.SeccompNotif) -> None:
        """A notification answered (or continued): no keeper needs it any more."""
        with self._klock:
            self._held.pop((li.fd, int(n.id)), None)
        self._tell_keeper(b"D" + json.dumps({"key": li.fd, "id": int(n.id)}).encode())

    def _continue(self, li: Listener, notif_id: int, reason: str) -> None:
        try:
            syscalls.notif_send(li.fd, notif_id, flags=syscalls.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            self.stats.gone += 1
            return
        li.continued += 1
        self.stats.continued += 1
        self.stats.by_reason[reason] = self.stats.by_reason.get(reason, 0) + 1

    def _answer(self, li: Listener, n: syscalls.SeccompNotif) -> None:
        arch, nr, pid = n.data.arch, n.data.nr, int(n.pid)
        if not abi.answerable(arch, nr):
            key = ("abi", arch, nr)
            if key not in self._once:
                self._once.add(key)
                log.warning("container %s: syscall %d of audit arch %#x is not an LP64 sysinfo we know: the kernel "
                            "answers it (logged once)", li.cid, nr, arch)
            self._continue(li, n.id, "abi")
            return
        if pid <= 0:  # not visible in our pid namespace
            self._continue(li, n.id, "pid")
            return
        try:
            ctx = self.renderer.resolver.resolve(pid)
            data = abi.pack(compute(self.renderer.env, ctx))
        except NotInContainer:
            self._continue(li, n.id, "host")
            return
        except ProcessGone:
            self._continue(li, n.id, "gone")
            return
        except Exception as e:
            self._warn.warning(("compute", type(e).__name__), "container %s: pid %d: %s: %s; the kernel answers",
                               li.cid, pid, type(e).__name__, e)
            self._continue(li, n.id, "compute")
            return
        self._write_and_send(li, n, pid, data)

    def _write_and_send(self, li: Listener, n: syscalls.SeccompNotif, pid: int, data: bytes) -> None:
        addr = int(n.data.args[0])
        try:
            memfd = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            self._continue(li, n.id, "mem")
            return
        try:
            try:
                with open(f"/proc/{pid}/maps", encoding="ascii", errors="replace") as f:
                    maps = f.read()
            except OSError:
                maps = ""
            # The descriptors were opened first: if the notification is still valid now, they are the caller's.
            if not syscalls.notif_id_valid(li.fd, n.id):
                self.stats.gone += 1
                return
            if not parse_maps_writable(maps, addr, abi.SIZE):
                self._continue(li, n.id, "efault")  # the kernel's own sysinfo fails it with EFAULT
                return
            try:
                os.pwrite(memfd, data, addr)
            except OSError:
                self._continue(li, n.id, "write")
                return
        finally:
            os.close(memfd)
        if not syscalls.notif_id_valid(li.fd, n.id):
            self.stats.gone += 1
            return
        try:
            syscalls.notif_send(li.fd, n.id, val=0)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            self.stats.gone += 1
            return
        li.answered += 1
        self.stats.answered += 1

    # ---- the keeper ---------------------------------------------------------------------------------------
    def _tell_keeper(self, msg: bytes, fds: list[int] | None = None) -> None:
        with self._klock:
            if self.keeper is None:
                return
            try:
                if fds:
                    socket.send_fds(self.keeper, [msg], fds)
                else:
                    self.keeper.send(msg)
            except OSError as e:
                log.warning("keeper gone (%s): starting another", e)
                self.keeper.close()
                self.keeper = None

    def start_keeper(self) -> None:
        """Start the fd keeper (keeper.py) and give it the socket, the lock and every listener."""
        assert self.sock is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [sys.executable, "-m", "pylxcfs.sysinfo.keeper", "--socket", self.sock_path, "--config",
                json.dumps(self.cfg.to_json()), "--fd", str(theirs.fileno())]
        try:
            self.keeper_proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                                start_new_session=True)
        except OSError as e:
            log.error("cannot start the fd keeper (%s): an agent crash would close every listener", e)
            ours.close()
            return
        finally:
            theirs.close()
        with self._klock, self.lock:
            self.keeper = ours
            try:
                self._sync_keeper(ours)
            except OSError as e:
                log.error("fd keeper %d: %s", self.keeper_proc.pid, e)
        log.info("fd keeper %d holds %d listeners", self.keeper_proc.pid, len(self.listeners))

    def _sync_keeper(self, keeper: socket.socket) -> None:
        """Tell a new keeper everything (call with _klock and lock held): the socket and the lock, every listener,
        then the notifications we hold (a thread that answers one later tells it D; one that received one a moment
        ago may tell it R again, which the keeper takes as the same notification)."""
        assert self.sock is not None
        socket.send_fds(keeper, [b"H"], [self.sock.fileno(), self.lock_fd])
        for li in self.listeners.values():
            socket.send_fds(keeper, [b"L" + json.dumps(dict(li.describe(), key=li.fd)).encode()], [li.fd])
        for received in self._held.values():
            keeper.send(received)

    def _check_keeper(self) -> None:
        if self.keeper_proc is not None and self.keeper_proc.poll() is not None:
            log.warning("fd keeper %d died (%s): starting another", self.keeper_proc.pid, self.keeper_proc.returncode)
            with self._klock:
                if self.keeper is not None:
                    self.keeper.close()
                    self.keeper = None
            self.keeper_proc = None
        if self.keeper is None:
            self.start_keeper()

    # ---- the socket ---------------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self.sock is not None
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        with conn:
            conn.settimeout(ACCEPT_TIMEOUT_S)
            try:
                self._connection(conn)
            except (OSError, ValueError) as e:
                self._warn.warning(("conn", type(e).__name__), "listener socket: %s: %s", type(e).__name__, e)

    def _connection(self, conn: socket.socket) -> None:
        # runc 1.1 keeps its end open until the runtime process exits (`runc exec` runs the whole command first),
        # so the state is taken as soon as it is complete JSON, not at EOF.
        chunks: list[bytes] = []
        fds: list[int] = []
        size = 0
        try:
            while True:
                msg, got, _flags, _addr = socket.recv_fds(conn, 65536, 16)
                fds.extend(got)
                if not msg and not got:
                    break
                chunks.append(msg)
                size += len(msg)
                if size > MAX_STATE_BYTES:
                    raise ValueError("state message too large")
                data = b"".join(chunks)
                if data[:1] == b"{":
                    if fds and data.rstrip().endswith(b"}"):
                        try:
                            st = json.loads(data.decode())
                        except (ValueError, UnicodeDecodeError):
                            continue  # not complete yet
                        self._state(st, fds)
                        return
                elif b"\n" in data:
                    self._command(conn, data.split(b"\n", 1)[0].decode(errors="replace"))
                    return
            if chunks:
                log.warning("listener socket: connection closed before a complete state with a listener fd "
                            "(%d bytes, %d fds): dropped", size, len(fds))
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _command(self, conn: socket.socket, line: str) -> None:
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != 0:
            conn.sendall(b"ERR root only\n")
            return
        word, _, arg = line.partition(" ")
        if word == "PING":
            with self.lock:
                n = len(self.listeners)
            s = self.stats
            kp = self.keeper_proc.pid if self.keeper_proc is not None and self.keeper is not None else 0
            conn.sendall(f"PONG pid={os.getpid()} keeper={kp} listeners={n} answered={s.answered} "
                         f"continued={s.continued} gone={s.gone} "
                         f"reasons={','.join(f'{k}:{v}' for k, v in sorted(s.by_reason.items())) or '-'}\n".encode())
        elif word == "RELOAD":
            try:
                self._reload_cfg = DaemonConfig.from_json(json.loads(arg)) if arg.strip() else self.cfg
            except (ValueError, TypeError) as e:
                conn.sendall(f"ERR bad config: {e}\n".encode())
                return
            conn.sendall(b"OK\n")
            self._signals.append(signal.SIGHUP)
        else:
            conn.sendall(b"ERR unknown command\n")

    def _state(self, st: Any, fds: list[int]) -> None:
        """A runtime's ContainerProcessState with its fds (config-linux.md: `fds` names them, `seccompFd`).
        Takes the listener out of `fds`; the caller closes the rest."""
        try:
            names = list(st.get("fds") or [])
            fd = fds[names.index("seccompFd") if "seccompFd" in names else 0]
        except (ValueError, IndexError, AttributeError, TypeError) as e:
            log.warning("listener socket: unusable container state (%s; %d fds): dropped", e, len(fds))
            return
        if not is_listener_fd(fd):
            log.warning("listener socket: fd from %r is not a seccomp listener: dropped", st.get("state"))
            return
        fds.remove(fd)
        os.set_inheritable(fd, False)
        state = st.get("state") or {}
        self.add(Listener(fd, str(state.get("id", "?")), int(st.get("pid") or state.get("pid") or 0),
                          str(state.get("bundle", ""))))

    # ---- main loop, reload, exit ------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    def serve(self, on_ready: Any = None) -> int:
        """Accept runtimes and commands until SIGTERM with no listener left; returns the exit code."""
        assert self.sock is not None
        sig_r, sig_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(sig_w, warn_on_full_buffer=False)
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(s, self._on_signal)
        self.renderer.start()
        self.start_keeper()
        log.info("sysinfo agent %d listening on %s (%d listeners)", os.getpid(), self.sock_path,
                 len(self.listeners))
        if on_ready is not None:
            on_ready()
        while True:
            try:
                readable, _, _ = select.select([self.sock.fileno(), sig_r], [], [], 1.0)
            except InterruptedError:
                readable = []
            if sig_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(sig_r, 512):
                        pass
            if self.sock.fileno() in readable:
                self._accept()
            self._check_keeper()
            sigs, self._signals = self._signals, []
            if signal.SIGHUP in sigs and self.reload():
                return 0
            if signal.SIGTERM in sigs or signal.SIGINT in sigs:
                with self.lock:
                    n = len(self.listeners)
                if n == 0:
                    log.info("no container uses the agent: exiting")
                    self.close()
                    return 0
                log.warning("SIGTERM ignored: %d containers hold a seccomp listener on this agent; closing it would "
                            "make their sysinfo(2) fail with ENOSYS (stop them first; SIGKILL forces)", n)

    def close(self) -> None:
        """Unlink the socket and drop the lock (a clean exit with no listener)."""
        self._tell_keeper(b"BYE")
        self.renderer.close()
        if self.sock is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.sock_path)
            self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.sock_path + ".pid")

    def _pause_threads(self) -> list[Listener]:
        self._pause.set()
        os.write(self._wake_w, b"x")
        deadline = time.monotonic() + PAUSE_TIMEOUT_S
        with self.lock:
            lis = list(self.listeners.values())
        for li in lis:
            if li.thread is not None:
                li.thread.join(max(0.0, deadline - time.monotonic()))
        with self.lock:
            return list(self.listeners.values())

    def _resume(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 512):
                pass
        self._pause.clear()
        with self.lock:
            lis = list(self.listeners.values())
        for li in lis:
            if li.thread is None or not li.thread.is_alive():
                li.thread = threading.Thread(target=self._serve_listener, args=(li,), name=f"sysinfo-{li.cid}",
                                             daemon=True)
                li.thread.start()

    def reload(self) -> bool:
        """Hand everything to a new agent from the code on disk; True once it took over (then we exit)."""
        assert self.sock is not None
        cfg = self._reload_cfg or self.cfg
        self._reload_cfg = None
        lis = self._pause_threads()
        pid = spawn_successor(self.sock_path, cfg, self.sock.fileno(), self.lock_fd,
                              [(li.describe(), li.fd) for li in lis])
        if pid is None:
            log.error("reload failed: keeping this agent")
            self._resume()
            return False
        log.info("reload: agent %d took over %d listeners; exiting", pid, len(lis))
        self._tell_keeper(b"BYE")
        self.renderer.close()
        return True


def spawn_successor(sock_path: str, cfg: DaemonConfig, listen_fd: int, lock_fd: int,
                    items: list[tuple[dict[str, Any], int]]) -> int | None:
    """Start a new agent from the code on disk and hand it the listening socket, the lock and the listeners (with
    any notification already received for them, `pending`); its pid once it says READY, else None (it is killed).
    Used by a reload and by the keeper after the agent died."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    argv = [sys.executable, "-m", "pylxcfs.sysinfo.agent", "--socket", sock_path, "--config",
            json.dumps(cfg.to_json()), "--takeover-fd", str(theirs.fileno())]
    try:
        proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        log.error("cannot start a new agent: %s", e)
        ours.close()
        theirs.close()
        return None
    theirs.close()
    try:
        ours.settimeout(TAKEOVER_TIMEOUT_S)
        socket.send_fds(ours, [json.dumps({"n": len(items)}).encode()], [listen_fd, lock_fd])
        for desc, fd in items:
            socket.send_fds(ours, [json.dumps(desc).encode()], [fd])
        if ours.recv(64) != b"READY":
            raise OSError(errno.EPROTO, "no READY")
    except OSError as e:
        log.error("new agent %d failed to take over (%s)", proc.pid, e)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        ours.close()
        return None
    ours.close()
    return proc.pid


def takeover(agent: Agent, fd: int) -> socket.socket:
    """Receive the listening socket, the lock and the listeners from the agent we replace."""
    ch = socket.socket(fileno=fd)
    msg, fds, _f, _a = socket.recv_fds(ch, 65536, 4)
    head = json.loads(msg.decode())
    agent.sock = socket.socket(fileno=fds[0])
    os.set_inheritable(fds[0], False)
    agent.lock_fd = fds[1]
    os.set_inheritable(fds[1], False)
    agent._write_pid()
    for _ in range(int(head["n"])):
        msg, got, _f, _a = socket.recv_fds(ch, 65536, 4)
        d = json.loads(msg.decode())
        os.set_inheritable(got[0], False)
        agent.add(Listener(got[0], str(d["cid"]), int(d["init_pid"]), str(d.get("bundle", "")),
                           pending=list(d.get("pending") or [])))
    return ch


def _detach() -> int:
    """Fork; the parent waits for the child's readiness byte and exits 0 (1 if the child died first). The child
    gets its own session; returns the write end of the readiness pipe in the child."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        ok = os.read(r, 1)
        os._exit(0 if ok else 1)
    os.close(r)
    os.setsid()
    return w


def main(argv: list[str] | None = None) -> int:
    """`python -m pylxcfs.sysinfo.agent --socket PATH [--config JSON] [--detach]` (started by `pylxcfs --sysinfo`)."""
    ap = argparse.ArgumentParser(prog="pylxcfs-sysinfo")
    ap.add_argument("--socket", required=True, help="the OCI listenerPath to serve")
    ap.add_argument("--config", default="{}", help="DaemonConfig JSON (view options, host root)")
    ap.add_argument("--detach", action="store_true", help="fork into the background once listening")
    ap.add_argument("--takeover-fd", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    # The daemon's status directory lists FUSE workers (`pylxcfs status`); the agent is not one of them.
    cfg = dataclasses.replace(DaemonConfig.from_json(json.loads(args.config)), status_dir=None)
    setup_logging(cfg.debug, tag=f"pylxcfs-sysinfo[{os.getpid()}]")
    # the kernel's OOM killer must not close every container's listener
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as f:
        f.write("-1000")
    agent = Agent(args.socket, cfg)
    agent.check_kernel()
    ready_w = _detach() if args.detach else -1
    if args.takeover_fd >= 0:
        ch = takeover(agent, args.takeover_fd)

        def on_ready() -> None:
            ch.send(b"READY")
            ch.close()
    else:
        agent.bind()

        def on_ready() -> None:
            if ready_w >= 0:
                os.write(ready_w, b"1")
                os.close(ready_w)
    return agent.serve(on_ready)


if __name__ == "__main__":
    sys.exit(main())
