"""What every part of `make bench` shares: the two daemons (started, stopped, pinned, their processes by role,
memory and CPU of all of them), the benchmark's cgroups and the bench/reader.c load generator.

The daemon is ALL its processes: the C lxcfs is one (with threads); pylxcfs is a supervisor, its serving
worker(s), the double-forked watchdog and, with --sysinfo, the sysinfo agent and its fd keeper.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CG = "/sys/fs/cgroup"
CONTROLLERS = ("memory", "cpuset", "cpu", "cpuacct", "blkio")


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                out += [int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


@dataclass
class Daemon:
    name: str
    mnt: Path
    proc: subprocess.Popen[bytes]

    def tree(self) -> list[int]:
        """The daemon's pid and its descendants (pylxcfs: the supervisor, its workers, the sysinfo agent)."""
        out = [self.proc.pid]
        frontier = [self.proc.pid]
        while frontier:
            kids = children(frontier.pop())
            out += kids
            frontier += kids
        return out

    def watchdogs(self) -> list[int]:
        """Processes of this daemon that are nobody's child: pylxcfs's double-forked watchdog, a `sh` named
        pylxcfs-watchdog whose arguments name this daemon's private mount point (so it cannot be another's)."""
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == self.proc.pid or _ppid(int(name)) != 1:
                continue
            args = _cmdline(int(name)).split(b"\0")
            if args[0] == b"pylxcfs-watchdog" and os.fsencode(str(self.mnt)) in args:
                out.append(int(name))
        return out

    def roles(self) -> dict[int, str]:
        """Every process of the daemon with its role."""
        out: dict[int, str] = {}
        for pid in self.tree():
            cmd = _cmdline(pid)
            if pid == self.proc.pid:
                out[pid] = "supervisor" if self.name == "pylxcfs" else "main"
            elif b"pylxcfs.fuse.wire" in cmd or b"pylxcfs.fuse.worker" in cmd:
                out[pid] = "worker"
            elif b"pylxcfs.fuse.zygote" in cmd:
                out[pid] = "zygote"  # forks the generation's workers (fuse/zygote.py); shares its pages with them
            elif b"sysinfo" in cmd:
                out[pid] = "sysinfo"
            else:
                out[pid] = "child"
        for pid in self.watchdogs():
            out[pid] = "watchdog"
        return out


def build_reader() -> Path:
    OUT.mkdir(exist_ok=True)
    exe = OUT / "reader"
    if not exe.exists() or exe.stat().st_mtime < (HERE / "reader.c").stat().st_mtime:
        subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "reader.c")], check=True)
    return exe


def make_cgroups(name: str) -> dict[str, Path]:
    dirs = {}
    for c in CONTROLLERS:
        d = Path(CG, c, name)
        d.mkdir(exist_ok=True)
        dirs[c] = d
    (dirs["memory"] / "memory.limit_in_bytes").write_text(str(1 << 30))
    (dirs["cpuset"] / "cpuset.mems").write_text(Path(CG, "cpuset", "cpuset.mems").read_text().strip())
    (dirs["cpuset"] / "cpuset.cpus").write_text("0")
    return dirs


def disk_of(path: Path) -> str | None:
    """MAJ:MIN of the whole disk holding `path` (its partition's parent), None on a virtual device."""
    dev = os.stat(path).st_dev
    sysdir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not sysdir.exists():
        return None  # overlayfs, tmpfs...: anonymous device, no block statistics
    if (sysdir / "partition").exists():
        sysdir = sysdir.resolve().parent
    return (sysdir / "dev").read_text().strip()


def give_disk_stats(dirs: dict[str, Path], tmp: Path) -> str:
    """Make the container's blkio cgroup account I/O, so diskstats shows rendered rows rather than nothing:
    on blk-mq v1 only blk-throttle accounts per cgroup, and only for devices with a rule, so set a rule
    that never throttles (1 TiB/s) on the disk holding `tmp`, then do 1 MiB of O_DIRECT I/O in the cgroup.
    (The C lxcfs 5.0 reads the CFQ files only and serves the host's diskstats on this kernel either way.)"""
    disk = disk_of(tmp)
    if disk is None:
        return "no block device under the temp dir: the container has no disk statistics"
    (dirs["blkio"] / "blkio.throttle.read_bps_device").write_text(f"{disk} {1 << 40}")
    f = tmp / "io"
    sh = (f"{join_prefix(dirs)}; dd if=/dev/zero of={f} bs=64k count=16 oflag=direct status=none && "
          f"dd if={f} of=/dev/null bs=64k iflag=direct status=none")
    subprocess.run(["sh", "-c", sh], check=True)
    f.unlink()
    return f"throttle rule (1 TiB/s) on {disk}; 1 MiB O_DIRECT write+read done in the container's cgroup"


def child_cgroups(parent: dict[str, Path], name: str, cpus: str = "0") -> dict[str, Path]:
    """A child cgroup set of `parent` (a container of its own; the parent's 1 GiB limit applies) on `cpus`."""
    dirs = {}
    for c, p in parent.items():
        d = p / name
        d.mkdir(exist_ok=True)
        dirs[c] = d
    (dirs["cpuset"] / "cpuset.mems").write_text((parent["cpuset"] / "cpuset.mems").read_text().strip())
    (dirs["cpuset"] / "cpuset.cpus").write_text(cpus)
    return dirs


def remove_cgroups(dirs: dict[str, Path]) -> None:
    for d in dirs.values():
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            kill_members(sub)
            with contextlib.suppress(OSError):
                sub.rmdir()
        kill_members(d)
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.05)


def kill_members(d: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (d / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def join_prefix(dirs: dict[str, Path]) -> str:
    """Shell that moves itself into every cgroup of `dirs` (the exec'd program inherits them)."""
    return "; ".join(f"echo $$ > {d}/cgroup.procs" for d in dirs.values())


def start(name: str, argv: list[str], mnt: Path) -> Daemon:
    mnt.mkdir(parents=True, exist_ok=True)
    log = open(OUT / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the daemon
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not os.path.ismount(mnt):
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}; see {OUT / (name + '.log')}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{name} did not mount {mnt} in 20 s")
        time.sleep(0.05)
    return Daemon(name, mnt, proc)


def stop(d: Daemon) -> None:
    if d.proc.poll() is None:
        d.proc.send_signal(signal.SIGTERM)
        try:
            d.proc.wait(10)
        except subprocess.TimeoutExpired:
            d.proc.kill()
            d.proc.wait()
    if os.path.ismount(d.mnt):
        subprocess.run(["umount", "-l", str(d.mnt)], check=False)


def _tids(pid: int) -> list[int]:
    try:
        return [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []


def pin(d: Daemon, cpus: set[int]) -> dict[str, object]:
    """Pin EVERY thread of every process of the daemon (serving ones, the supervisor, the watchdog) to `cpus`,
    then read each thread's Cpus_allowed_list back. Threads created later inherit the mask of their creator
    (lxcfs's libfuse grows its thread pool on demand), so this holds for the whole phase; `check_pinned`
    verifies it again at the end. Returns what was pinned, for the report."""
    pinned = 0
    for pid in d.roles():
        for tid in _tids(pid):
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(tid, cpus)
                pinned += 1
    bad = check_pinned(d, cpus)
    if bad:
        raise SystemExit(f"{d.name}: threads not pinned to {sorted(cpus)}: {bad}")
    return {"processes": len(d.roles()), "threads": pinned}


def check_pinned(d: Daemon, cpus: set[int]) -> list[str]:
    """Threads of the daemon whose affinity is not exactly `cpus` (empty = all pinned)."""
    bad = []
    for pid, role in d.roles().items():
        for tid in _tids(pid):
            with contextlib.suppress(ProcessLookupError):
                if os.sched_getaffinity(tid) != cpus:
                    bad.append(f"{role} {pid} thread {tid}: {sorted(os.sched_getaffinity(tid))}")
    return bad


def run_reader(reader: Path, dirs: dict[str, Path], path: Path, opens: int, procs: int, cpus: str | None) -> float:
    pin_cmd = f"taskset -c {cpus} " if cpus else ""
    sh = f"{join_prefix(dirs)}; exec unshare --pid --fork {pin_cmd}{reader} -n {opens} -p {procs} {path}"
    res = subprocess.run(["sh", "-c", sh], capture_output=True, text=True, check=False)
    m = re.search(r"ops=([\d.]+) .*errors=(\d+)", res.stdout)
    if res.returncode != 0 or not m:
        raise SystemExit(f"reader failed on {path}: {res.stdout} {res.stderr}")
    if int(m.group(2)):
        raise SystemExit(f"reader saw {m.group(2)} errors on {path}")
    return float(m.group(1))


def _status_kib(pid: int, key: str, fname: str = "status") -> int:
    try:
        m = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/{fname}").read_text(), re.M)
    except OSError:
        return 0
    return int(m.group(1)) if m else 0


def memory_kib(d: Daemon) -> dict[str, object]:
    """Resident memory of every process of the daemon, by role.

    What counts (decided in bench/RESULTS.md): the daemon is ALL its processes, the serving worker, the
    supervisor that holds the connection and the watchdog that unmounts after a crash. The figure held
    against the 40 MB goal is `pss_all`, the sum of their PSS (proportional set size: a page shared by k
    processes counts 1/k in each), i.e. what the machine gets back when the daemon exits. `rss_all` (plain
    sum of VmRSS) counts each shared page (libpython, the CoW pages the watchdog shares with the supervisor)
    once per process and is printed alongside, as is `rss_serving` (supervisor + worker, the lead's first
    figure)."""
    procs = []
    for pid, role in sorted(d.roles().items()):
        procs.append({"pid": pid, "role": role, "rss_kib": _status_kib(pid, "VmRSS"),
                      "pss_kib": _status_kib(pid, "Pss", "smaps_rollup"),
                      "anon_kib": _status_kib(pid, "RssAnon")})
    return {
        "processes": procs,
        "rss_all": sum(int(str(p["rss_kib"])) for p in procs),
        "pss_all": sum(int(str(p["pss_kib"])) for p in procs),
        "rss_serving": sum(int(str(p["rss_kib"])) for p in procs if p["role"] != "watchdog"),
    }


def cpu_seconds(d: Daemon) -> float:
    """User + system CPU of every process (all threads) of the daemon, including reaped children."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in d.roles():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in fields[11:15]) / tick  # utime stime cutime cstime
    return total
