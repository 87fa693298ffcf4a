"""Test support for the daemon's own tests (t3_daemon, t4_supervisor): start `pylxcfs` on a tmp mount
point, find its supervisor/worker/watchdog processes, run a reader loop in a separate process, and
clean up by pid. Root only; touches only what it created.

The reader loop runs as its own process so that a wedged FUSE request (SIGSTOPped daemon) can never
hang the test process: the test waits on it with deadlines and SIGKILLs it (FUSE waits are killable).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYLXCFS = REPO / ".venv" / "bin" / "pylxcfs"
PY = REPO / ".venv" / "bin" / "python"

MEMINFO = (
    "MemTotal:        1048576 kB\nMemFree:          524288 kB\nMemAvailable:     786432 kB\n"
    "Buffers:            1024 kB\nCached:           262144 kB\nSwapCached:            0 kB\n"
    "Active:           131072 kB\nInactive:         131072 kB\nShmem:               4096 kB\n"
    "SwapTotal:        102400 kB\nSwapFree:          102400 kB\nSReclaimable:        8192 kB\n"
)


def _put(path: Path, text: str) -> None:
    """Give `path` the content `text` without a moment in which a reader sees anything else: left alone when it
    already has it, else written beside and renamed over it. A second daemon started on the same fixture tree
    (the adoption tests) calls make_fixture_root again while the first one's workers serve reads from it; a
    write_text() there truncated meminfo, and a read rendered in that window came back empty."""
    data = text.encode()
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(path)  # never open a FIFO a test planted there (it would block)
        if stat.S_ISREG(st.st_mode) and st.st_size == len(data) and path.read_bytes() == data:
            return
    staged = path.with_name(f".{path.name}.new")
    staged.write_bytes(data)
    os.rename(staged, path)


def make_fixture_root(base: Path) -> Path:
    """A tiny host tree whose files differ from this machine's, so every read proves it came from the
    daemon's renderer (a host caller gets the host file of the --host-root tree). Calling it again on the same
    base is safe while a daemon serves from the tree: a file that is already right is not touched."""
    root = base / "hostroot"
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "sys/devices/system/cpu").mkdir(parents=True, exist_ok=True)
    _put(root / "proc/meminfo", MEMINFO)
    _put(root / "proc/uptime", "12345.67 23456.78\n")
    _put(root / "proc/loadavg", "0.11 0.22 0.33 1/99 4242\n")
    _put(root / "proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n")
    _put(root / "sys/devices/system/cpu/online", "0\n")
    # The daemon's own pid namespace, as procfs shows it; the tree holds no other process, so every caller
    # (a real pid of this machine) is gone from its point of view and reads the tree's host files.
    (root / "proc/self/ns").mkdir(parents=True, exist_ok=True)
    if not (root / "proc/self/ns/pid").is_symlink():
        (root / "proc/self/ns/pid").symlink_to("pid:[4026531836]")
    return root


def mountinfo_entry(path: Path) -> tuple[str, str] | None:
    """(fstype, source) of the top mount at `path`, from /proc/self/mountinfo (never stats the mount)."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-", 6)
            if parts[4] == str(path):
                found = (parts[sep + 1], parts[sep + 2])
    return found


def children(pid: int) -> list[int]:
    """Direct children of pid."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """pid's descendants, parents before children."""
    out: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop(0)
        out.append(p)
        todo += children(p)
    return out


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kernel_state(pid: int) -> str:
    """One line per process for a failure report: its command, state, wait channel and kernel stack."""
    def read(name: str) -> str:
        try:
            with open(f"/proc/{pid}/{name}") as f:
                return f.read().strip()
        except OSError as e:
            return f"<{e.strerror}>"
    stat = read("stat")
    state = stat.rsplit(")", 1)[1].split()[0] if ")" in stat else stat
    stack = " <- ".join(x.split("]", 1)[-1].strip().split("+")[0] for x in read("stack").splitlines())
    return f"pid {pid} [{cmdline(pid)[:80]}] state {state} wchan {read('wchan')} stack: {stack}"


def wait_for(cond: object, timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll cond() until true; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Daemon:
    """A pylxcfs started by a test."""

    proc: subprocess.Popen[bytes]
    mnt: Path
    pidfile: Path
    log: Path
    watchdog: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        """Live worker pids (children running pylxcfs.fuse.worker)."""
        return [c for c in children(self.pid) if "pylxcfs.fuse.worker" in cmdline(c) and alive(c)]

    def all_workers(self) -> list[int]:
        """Every live worker serving our mount point, ours or orphaned (a killed supervisor's workers keep
        serving until a new supervisor adopts them): found by `--mount MNT` in their command line."""
        out = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                argv = cmdline(int(d)).split()
                if "pylxcfs.fuse.worker" in argv and str(self.mnt) in argv and alive(int(d)):
                    out.append(int(d))
        return out

    def diagnose(self) -> str:
        """What the daemon is doing, for a failure report: every process's kernel state, the connection's count of
        requests waiting for an answer, and (after SIGUSR1: faulthandler) each one's Python stack in the log."""
        pids = [self.pid, *self.all_workers()]
        lines = [kernel_state(p) for p in pids]
        lines.append(f"fuse connection waiting: {self._waiting()}")
        mark = len(self.log_text())
        for p in pids:  # one at a time: their reports would interleave in the shared log
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGUSR1)
            time.sleep(0.3)
        lines.append("python stacks (faulthandler):\n" + self.log_text()[mark:][-20000:])
        return "\n".join(lines)

    def _waiting(self) -> str:
        dev = None  # MAJ:MIN from mountinfo: a stat of a stalled mount would hang the report
        with open("/proc/self/mountinfo") as m:
            for line in m:
                parts = line.split()
                if parts[4] == str(self.mnt):
                    dev = parts[2]
        if dev is None:
            return "not mounted"
        try:
            with open(f"/sys/fs/fuse/connections/{dev.split(':')[1]}/waiting") as f:
                return f.read().strip()
        except OSError as e:  # fusectl not mounted at /sys/fs/fuse/connections
            return f"<{e.strerror}>"

    def worker(self, timeout: float = 5) -> int:
        """The single serving worker, once there is exactly one."""
        wait_for(lambda: len(self.workers()) == 1, timeout, "exactly one worker")
        return self.workers()[0]

    def mounted(self) -> bool:
        return mountinfo_entry(self.mnt) is not None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait; SIGKILL if needed; lazy-unmount leftovers. Returns the exit code if it exited."""
        code = None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_all()
        else:
            code = self.proc.returncode
        self.cleanup()
        return code

    def kill_all(self) -> None:
        """SIGKILL supervisor, workers (orphaned ones too) and watchdog (by pid)."""
        pids = [self.pid, *self.workers(), *self.all_workers()]
        if self.watchdog:
            pids.append(self.watchdog)
        for p in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)

    def cleanup(self) -> None:
        """Kill what is left by pid and lazily unmount our mount point if still mounted."""
        if self.proc.poll() is None or self.all_workers():
            self.kill_all()
        if self.watchdog and alive(self.watchdog):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.watchdog, signal.SIGKILL)
        for _ in range(4):
            if not self.mounted():
                break
            subprocess.run(["umount", "-l", str(self.mnt)], check=False, capture_output=True)


def find_watchdog(mnt: Path, pidfile: Path, exclude: int) -> int | None:
    """The watchdog: a re-parented `sh` named pylxcfs-watchdog whose arguments name our mount point."""
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == exclude:
            continue
        c = cmdline(int(d))
        if c.startswith("pylxcfs-watchdog") and str(mnt) in c.split():
            return int(d)
    return None


def start_daemon(tmp: Path, *args: str, mnt: Path | None = None, name: str = "d",
                 timeout: float = 30) -> Daemon:
    """Start `pylxcfs -f --pidfile ... [args] MNT` and wait until it serves (mounted and a worker ready)."""
    mnt = mnt or tmp / f"{name}-mnt"
    pidfile = tmp / f"{name}.pid"
    log = tmp / f"{name}.log"
    with open(log, "ab") as lf:
        proc = subprocess.Popen([str(PYLXCFS), "-f", "--pidfile", str(pidfile), *args, str(mnt)],
                                stdout=lf, stderr=lf, stdin=subprocess.DEVNULL)
    d = Daemon(proc, mnt, pidfile, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}:\n{d.log_text()}")
        if d.mounted() and "serving" in d.log_text():
            break
        time.sleep(0.02)
    else:
        d.cleanup()
        raise AssertionError(f"daemon did not serve within {timeout} s:\n{d.log_text()}")
    # Every back-end starts a watchdog before it serves, but it is forked twice and then exec'd: on a loaded machine
    # its command line can still be the daemon's for a moment after "serving" (seen in a clean-clone CI run).
    wd_deadline = time.monotonic() + 10
    while (wd := find_watchdog(mnt, pidfile, proc.pid)) is None and time.monotonic() < wd_deadline:
        time.sleep(0.05)
    d.watchdog = wd
    return d


READER_SRC = r'''
import json, os, sys, time, signal
path, out, interval = sys.argv[1], sys.argv[2], float(sys.argv[3])
stop = False
def _stop(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, _stop)
with open(out, "w", buffering=1) as f:
    while not stop:
        m0 = time.monotonic()  # CLOCK_MONOTONIC: the test compares "t" with its own time.monotonic()
        rec = {"t": m0}
        try:
            with open(path, "rb") as r:
                data = r.read()
            rec["ok"] = True
            rec["data"] = data.decode(errors="replace")
        except OSError as e:
            rec["ok"] = False
            rec["err"] = f"{type(e).__name__}: {e}"
        rec["dt"] = time.monotonic() - m0
        f.write(json.dumps(rec) + "\n")
        time.sleep(interval)
'''


@dataclass
class ReaderResult:
    """What a reader loop saw."""

    records: list[dict[str, object]]

    @property
    def reads(self) -> int:
        return len(self.records)

    @property
    def errors(self) -> list[dict[str, object]]:
        return [r for r in self.records if not r["ok"]]

    @property
    def longest_s(self) -> float:
        return max((float(r["dt"]) for r in self.records), default=0.0)  # type: ignore[arg-type]

    def summary(self, name: str) -> dict[str, object]:
        return {"scenario": name, "reads": self.reads, "errors": len(self.errors),
                "longest_read_ms": round(self.longest_s * 1000, 1)}


class ReaderLoop:
    """`python -c READER_SRC PATH OUT 0.05` in its own process: one open/read/close every 50 ms.

    With argv_prefix `unshare --pid --fork ...` the reader is PID 1 of a new pid namespace (a second "container");
    unshare --fork blocks SIGTERM while it waits for its child, so stop() signals the reader itself (an init
    receives a signal from an ancestor namespace when it has a handler for it: pid_namespaces(7))."""

    def __init__(self, path: Path, out: Path, interval: float = 0.05, argv_prefix: list[str] | None = None,
                 on_stuck: Callable[[], str] | None = None) -> None:
        self.out = out
        self.on_stuck = on_stuck  # called while the reader is still stuck (a daemon's diagnose): its report kept
        self.stuck_report = ""
        self._forks = bool(argv_prefix) and argv_prefix[0] == "unshare" and "--fork" in argv_prefix
        self.proc = subprocess.Popen([*(argv_prefix or []), str(PY), "-c", READER_SRC, str(path), str(out),
                                      str(interval)], stdin=subprocess.DEVNULL)

    def _reader_pids(self) -> list[int]:
        return (children(self.proc.pid) if self._forks else []) or [self.proc.pid]

    def _signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def stop(self, timeout: float = 5) -> ReaderResult:
        """Ask it to finish its current read; SIGKILL if it is stuck. Returns what it recorded."""
        if self.proc.poll() is None:
            pids = self._reader_pids()
            self._signal(pids, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stuck_report = "\n".join(kernel_state(p) for p in pids)
                if self.on_stuck is not None:
                    self.stuck_report += "\n" + self.on_stuck()
                print(f"reader {self.out.name} did not stop within {timeout} s of SIGTERM:\n{self.stuck_report}",
                      file=sys.stderr)
                self._signal([*pids, self.proc.pid], signal.SIGKILL)
                try:
                    self.proc.wait(30)  # a loaded machine can take seconds to tear a pid namespace down
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"reader {self.out.name} still blocked 30 s after SIGKILL (a request the "
                                         f"daemon took and never answered):\n{self.stuck_report}") from None
        recs = []
        if self.out.exists():
            for line in self.out.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    recs.append(json.loads(line))
        return ReaderResult(recs)

    def count(self) -> int:
        return len(self.out.read_text().splitlines()) if self.out.exists() else 0


def record_result(tmp: Path, summary: dict[str, object]) -> None:
    """Print a scenario's numbers and append them to $PYLXCFS_T4_RESULTS (JSON lines) if set."""
    line = json.dumps(summary)
    print(f"\nSCENARIO {line}", file=sys.stderr)
    (tmp / "result.json").write_text(line + "\n")
    dest = os.environ.get("PYLXCFS_T4_RESULTS")
    if dest:
        with open(dest, "a") as f:
            f.write(line + "\n")
