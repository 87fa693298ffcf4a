"""The daemon's command line: `pylxcfs [options] [MOUNTPOINT]`, flag-compatible with C lxcfs, and
`pylxcfs status [--json] [MOUNTPOINT]` (status.py).

Role: parse flags, take the pidfile lock, clean the mount point, then hand over to a FUSE back-end:
the supervisor of the raw protocol (default; fuse/supervisor.py) or the single-process mfusepy
adapter (fuse/mfuse.py). It turns QuietError into a message and an exit code, and decides nothing
about content.

Exit codes: 0 clean shutdown (SIGTERM/SIGINT), 1 error, 2 usage, 3 mount point busy (a live lxcfs
mount is there), 4 pidfile locked by another instance.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import resource
import subprocess
import sys
from collections.abc import Callable

from pylxcfs import __version__, statusdir
from pylxcfs.context import ViewOptions
from pylxcfs.errors import QuietError
from pylxcfs.fuse import mountpoint
from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.fuse.sdnotify import sd_notify
from pylxcfs.log import setup_logging

log = logging.getLogger("pylxcfs")

DEFAULT_MOUNTPOINT = "/var/lib/lxc/lxcfs"
DEFAULT_PIDFILE = "/run/pylxcfs.pid"
EXIT_PIDFILE_LOCKED = 4

EPILOG = """exit codes: 0 clean shutdown, 1 error, 2 usage, 3 mount point busy (a live FUSE mount is
there), 4 pidfile locked (another instance runs). Signals: SIGTERM/SIGINT unmount and exit 0; SIGHUP
(raw back-end) replaces the serving workers by ones started from the code on disk without failing a read.
A pylxcfs started on a mount point whose supervisor was killed adopts its still-serving workers.
`pylxcfs status [--json] [MOUNTPOINT]` reports the daemon's health and the containers it serves
(`pylxcfs status --help`); a mount point literally named "status" must be written ./status."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and the man page)."""
    ap = argparse.ArgumentParser(prog="pylxcfs", description="Per-container /proc and /sys views over FUSE "
                                 "(an LXCFS in Python).", epilog=EPILOG)
    ap.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT,
                    help=f"where to mount (created if missing; default {DEFAULT_MOUNTPOINT})")
    ap.add_argument("-f", "--foreground", action="store_true", help="stay in the foreground")
    ap.add_argument("-d", "--debug", action="store_true", help="debug logging (implies --foreground)")
    ap.add_argument("-l", "--enable-loadavg", action="store_true", help="virtualise /proc/loadavg")
    ap.add_argument("-u", "--disable-swap", action="store_true", help="show no swap in containers")
    ap.add_argument("--enable-cfs", action="store_true", help="CPU count from the CFS quota, capped by the cpuset")
    ap.add_argument("-p", "--pidfile", default=DEFAULT_PIDFILE, help=f"default {DEFAULT_PIDFILE}")
    ap.add_argument("-o", dest="options", default="", help="extra FUSE options (mfusepy back-end only; the raw "
                    "back-end always uses allow_other, direct_io and 0.5 s entry/attr timeouts)")
    ap.add_argument("-s", action="store_true", help=argparse.SUPPRESS)  # lxcfs legacy, ignored
    ap.add_argument("--log", metavar="FILE", help="append log lines to FILE (created 0600) instead of stderr; "
                    "without -f, logs are otherwise discarded")
    ap.add_argument("--host-root", metavar="DIR", help="read proc/ and sys/ from DIR instead of the host (tests)")
    ap.add_argument("--fuse-backend", choices=("raw", "mfusepy"), default="raw",
                    help="raw: supervised workers speaking the kernel protocol (default; survives worker "
                    "crashes and reloads); mfusepy: one libfuse3 process")
    ap.add_argument("--metrics-listen", metavar="ADDR:PORT|unix:PATH", action="append", default=[],
                    type=_listen_type, help="serve Prometheus metrics at http://ADDR:PORT/metrics (`:9100` for every "
                    "address, `[::1]:9100` for IPv6) or on a unix socket; repeatable. A small exporter process "
                    "started with the daemon serves them")
    ap.add_argument("--sysinfo", action="store_true",
                    help="also answer sysinfo(2) in containers (busybox free/uptime, sysconf(_SC_PHYS_PAGES), JVM "
                    "heap sizing): start (or reload) the sysinfo agent on the seccomp listener socket "
                    "MOUNTPOINT.sysinfo.sock, for configs carrying `install-hook --sysinfo`'s notify rule. The agent "
                    "outlives the daemon (it and its fd keeper hold the containers' listeners; see docs/sysinfo.md). "
                    "Off by default: if the agent and its keeper are both killed, those containers' sysinfo(2) "
                    "fails with ENOSYS until they restart")
    ap.add_argument("--sysinfo-socket", metavar="PATH", help="the agent's socket (default MOUNTPOINT.sysinfo.sock)")
    ap.add_argument("--workers", type=int, metavar="N", default=None,
                    help="raw back-end: worker processes serving the mount (default: one per CPU, at most 4; "
                    "1-64)")
    ap.add_argument("--zygote-linger", type=float, metavar="S", default=5.0,
                    help="raw: how long the pre-imported process that forks the workers stays once a pool of 2 or "
                         "more serves in full (default 5; a later spawn starts a new one; a lone worker's stays)")
    ap.add_argument("--request-timeout", type=float, metavar="S", default=2.0,
                    help="raw back-end: a worker in one request longer than S seconds is replaced and the "
                    "request resent to another (default 2)")
    ap.add_argument("--spin-us", type=int, metavar="US", default=50,
                    help="raw back-end: a worker that has answered everything polls for the next request this many "
                    "microseconds before it sleeps (default 50; 0: sleep at once). Saves the wake-up of a reader's "
                    "next request (open, read, close come back to back) at the cost of at most US of CPU per lull")
    ap.add_argument("-v", "--version", action="version", version=f"pylxcfs {__version__}")
    return ap


def _listen_type(spec: str) -> object:
    from pylxcfs.metrics import parse_listen  # prometheus_client is imported only when metrics are asked for

    return parse_listen(spec)


class PidFile:
    """A pidfile held with a write lock for the life of the process (lxcfs semantics)."""

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            other = ""
            try:
                with open(path) as f:
                    other = f.read().strip()
            except OSError:
                pass
            raise QuietError(f"pidfile {path} is locked by another pylxcfs (pid {other or '?'})",
                             EXIT_PIDFILE_LOCKED) from None

    def write(self) -> None:
        """Record our pid."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def remove(self) -> None:
        """Unlink and unlock."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)


def _open_log(path: str) -> int:
    """The --log file, opened for appending (0600 when created): a clear error if it cannot be."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise QuietError(f"--log {path}: {e.strerror}", 1) from None


def _redirect_output(logfd: int) -> None:
    """stdout and stderr (inherited by workers and the watchdog) go to the log file."""
    for fd in (1, 2):
        os.dup2(logfd, fd)


def _daemonize(logfd: int | None = None) -> Callable[[int, str], None]:
    """Fork; the parent waits until the child reports readiness (or failure), prints the child's error
    message if any and exits with its code. Returns the child's `report(code, message)`. The child's
    stdin goes to /dev/null, its stdout and stderr to the --log file, or to /dev/null without one."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(wfd)
        # One write of at most PIPE_BUF bytes is atomic: read one message, not to EOF (the watchdog,
        # forked later, inherits the write end and keeps it open).
        data = os.read(rfd, 4096)
        if not data:  # the child died without a word
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code > 0 else 1)
        code_s, _, msg = data.decode(errors="replace").partition(" ")
        if msg:
            print(f"pylxcfs: {msg}", file=sys.stderr)
        os._exit(int(code_s or "1"))
    os.close(rfd)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    _redirect_output(null if logfd is None else logfd)
    os.close(null)

    def report(code: int, msg: str = "") -> None:
        try:
            os.write(wfd, f"{code} {msg}".encode()[:4000])
            os.close(wfd)
        except OSError:
            pass

    return report


def _load_registry_job() -> dict[str, object]:
    from pylxcfs.service import load_registry

    load_registry()
    return {}


def check_registry() -> None:
    """service.load_registry() in a forked child: it imports every view module, which this process (the raw
    back-end's supervisor) never needs; imported here they would stay as private heap for the daemon's life.
    Raises QuietError with the child's RegistryError."""
    from pylxcfs import forkjob

    r = forkjob.run_one("registry", _load_registry_job, timeout_s=120.0)
    if not r.ok:
        raise QuietError(r.error.removeprefix("RegistryError: "), 1)


def _nobody_waits(_code: int, _msg: str) -> None:
    """The foreground `report`: no parent is waiting for readiness."""


def run(args: argparse.Namespace) -> int:
    """Everything after argument parsing; raises QuietError for user/environment errors."""
    foreground = args.foreground or args.debug
    report: Callable[[int, str], None] = _nobody_waits
    if args.host_root is not None and not os.path.isdir(os.path.join(args.host_root, "proc")):
        raise QuietError(f"--host-root {args.host_root}: no proc/ directory there", 1)
    if os.geteuid() != 0:
        raise QuietError("pylxcfs must run as root (it mounts a FUSE filesystem with allow_other)", 1)
    # Every registry row must name a module and function that exist: a broken row stops the start here, before
    # anything is mounted, instead of silently serving the host file (service.load_registry raises RegistryError).
    check_registry()
    logfd = _open_log(args.log) if args.log else None
    if not foreground:
        report = _daemonize(logfd)
    elif logfd is not None:
        _redirect_output(logfd)
    try:
        pidfile = PidFile(args.pidfile)
    except QuietError as e:
        report(e.exit_code, str(e))
        raise
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise QuietError(f"--workers {args.workers}: must be 1..64", 2)
    if not args.zygote_linger >= 0:
        raise QuietError(f"--zygote-linger {args.zygote_linger}: must be >= 0", 2)
    if not args.request_timeout > 0:
        raise QuietError(f"--request-timeout {args.request_timeout}: must be > 0", 2)
    if not 0 <= args.spin_us <= 10_000:
        raise QuietError(f"--spin-us {args.spin_us}: must be 0..10000", 2)
    status_dir = statusdir.status_dir_for(args.pidfile)
    adopted = None
    try:
        try:
            statusdir.prepare(status_dir)  # only now: the pidfile lock says no other daemon publishes there
        except OSError as e:
            raise QuietError(f"status directory {status_dir}: {e.strerror or e}", 1) from None
        if args.metrics_listen:
            from pylxcfs import metrics

            try:
                metrics.spawn(args.metrics_listen, status_dir)
            except OSError as e:
                raise QuietError(str(e), 1) from None
        if args.fuse_backend == "raw":
            # Workers outlive a killed supervisor and keep the mount serving: take them over instead of
            # refusing the busy mount point (fuse/adopt.py).
            from pylxcfs.fuse.adopt import adopt

            adopted = adopt(mountpoint.canonical(args.mountpoint))
        mnt = mountpoint.canonical(args.mountpoint) if adopted else mountpoint.prepare(args.mountpoint)
    except QuietError as e:
        pidfile.remove()
        report(e.exit_code, str(e))
        raise
    try:
        pidfile.write()
        cfg = DaemonConfig(host_root=os.path.abspath(args.host_root) if args.host_root else None,
                           opts=ViewOptions(enable_loadavg=args.enable_loadavg, disable_swap=args.disable_swap,
                                            enable_cfs=args.enable_cfs), debug=args.debug, status_dir=status_dir,
                           spin_us=args.spin_us)

        if args.sysinfo:
            start_sysinfo_agent(args.sysinfo_socket or mnt, cfg, explicit=args.sysinfo_socket is not None)

        def on_ready() -> None:
            log.info("serving %s (pid %d, backend %s)", mnt, os.getpid(), args.fuse_backend)
            sd_notify(f"READY=1\nMAINPID={os.getpid()}")
            report(0, "")

        if args.fuse_backend == "mfusepy":
            from pylxcfs.fuse.mfuse import serve_mfusepy

            code = serve_mfusepy(mnt, cfg, args.options, on_ready)
        else:
            from pylxcfs.fuse.supervisor import Supervisor

            if args.options:
                log.warning("-o %s ignored: the raw back-end always mounts with allow_other, direct_io and "
                            "0.5 s entry/attr timeouts", args.options)

            code = Supervisor(mnt, cfg, on_ready=on_ready, notify=sd_notify, workers=args.workers,
                              request_timeout_s=args.request_timeout, adopted=adopted,
                              zygote_linger_s=args.zygote_linger).run()
    except BaseException as e:
        report(e.exit_code if isinstance(e, QuietError) else 1, str(e))
        raise
    finally:
        pidfile.remove()
    return code


def start_sysinfo_agent(where: str, cfg: DaemonConfig, explicit: bool = False) -> None:
    """The daemon's one hook into the sysinfo agent (pylxcfs/sysinfo/): start it, or have a running one reload
    from the code on disk with these view options. The agent is not a child of the daemon: it keeps the
    containers' seccomp listeners through daemon restarts. A failure is logged; the files are served anyway."""
    from pylxcfs.sysinfo import client

    try:
        sock = where if explicit else client.socket_for(where)
        log.info("sysinfo agent on %s: %s", sock, client.ensure(sock, cfg))
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as e:
        log.error("sysinfo agent not available (%s): sysinfo(2) in containers shows the host", e)


def raise_nofile_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit (inherited by workers). The views keep cgroup files open
    between reads (views/readers.py: up to 1024 descriptors with many containers), and systemd's default soft
    limit is 1024; running out would only cost speed, but there is no reason to."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard))


def main(argv: list[str] | None = None) -> int:
    """Console entry point of `pylxcfs`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["status"]:
        from pylxcfs import status

        return status.main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, tag=f"pylxcfs[{os.getpid()}]")
    raise_nofile_limit()
    try:
        return run(args)
    except QuietError as e:
        print(f"pylxcfs: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"pylxcfs: {e}", file=sys.stderr)
        return 1
