"""`make bench`: pylxcfs against the C lxcfs, side by side, every virtual file.

What it does (issue 5):
1. Builds bench/reader.c (open -> read to EOF -> close in a loop, P forked processes released together).
2. Creates a limited v1 cgroup set (memory 1 GiB, cpuset 0, cpu, cpuacct, blkio) owned by the benchmark.
3. Starts the C lxcfs (Debian package `lxcfs`) and pylxcfs on two temporary mount points, both with -l.
4. Pinned phase: EVERY thread of every process of both daemons (checked by reading each thread's affinity
   back, before and after the phase) and the reader on CPU 0; interleaved rounds (per round, every file on
   both daemons back to back, orders shuffled); per file the medians and ranges of opens/s and the ratio
   pylxcfs/lxcfs as the median of the per-round ratios. Unpinned phase: the same with 4 concurrent readers.
5. Memory of every process of each daemon (pylxcfs: supervisor, worker, watchdog) as RSS and PSS; reader
   cost with 1, 100 and 1000 live container-like pid namespaces (each in its own cgroups, having read the
   files once, so per-namespace caches and the loadavg samplers are populated); the daemons' CPU use while
   idle with those namespaces alive (the loadavg samplers' cost, both daemons run with -l).
Every reader runs in the limited cgroups and in its own pid namespace, so both daemons see a container.
Results: tables on stdout, bench/out/results.md and bench/out/results.json (every sample). Nothing here
asserts a speed; this is a measurement. Default run: about 3 minutes on 2 CPUs; --quick: ~15 s smoke run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pylxcfs.views.registry import VIEW_PATHS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CG = "/sys/fs/cgroup"
CONTROLLERS = ("memory", "cpuset", "cpu", "cpuacct", "blkio")
FILES = VIEW_PATHS  # every file of the registry (views/registry.py)


def _children(pid: int) -> list[int]:
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
        """The daemon's pid and its descendants (pylxcfs: the supervisor and its worker, which serves)."""
        out = [self.proc.pid]
        frontier = [self.proc.pid]
        while frontier:
            kids = _children(frontier.pop())
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
            elif b"pylxcfs.fuse.wire" in cmd:
                out[pid] = "worker"
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


def child_cgroups(parent: dict[str, Path], name: str) -> dict[str, Path]:
    dirs = {}
    for c, p in parent.items():
        d = p / name
        d.mkdir(exist_ok=True)
        dirs[c] = d
    (dirs["cpuset"] / "cpuset.mems").write_text((parent["cpuset"] / "cpuset.mems").read_text().strip())
    (dirs["cpuset"] / "cpuset.cpus").write_text("0")
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


Results = dict[str, dict[str, list[float]]]


def phase(reader: Path, dirs: dict[str, Path], daemons: list[Daemon], rounds: int, opens: int,
          procs: int, cpus: str | None) -> Results:
    """Interleaved rounds: in every round each file is measured on both daemons back to back (file order and
    daemon order shuffled per round), so slow drifts of the shared machine hit both sides of a ratio alike."""
    results: Results = {f: {d.name: [] for d in daemons} for f in FILES}
    for r in range(rounds):
        files = list(FILES)
        random.shuffle(files)
        for f in files:
            # The C lxcfs serves no proc/partitions (that file is iSulad's addition): measure ours alone.
            order = [d for d in daemons if (d.mnt / f).exists()]
            random.shuffle(order)
            for d in order:
                results[f][d.name].append(run_reader(reader, dirs, d.mnt / f, opens, procs, cpus))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return results


def summarize(results: Results) -> list[dict[str, object]]:
    """Per file: medians and ranges of opens/s per daemon, and the ratio pylxcfs/lxcfs as the MEDIAN OF THE
    PER-ROUND RATIOS (each round's two numbers were taken back to back) with its range."""
    rows: list[dict[str, object]] = []
    for f, by in results.items():
        py = by["pylxcfs"]
        row: dict[str, object] = {"file": f, "pylxcfs": round(statistics.median(py)),
                                  "pylxcfs_range": [round(min(py)), round(max(py))], "pylxcfs_all": py}
        c = by.get("lxcfs", [])
        if c:
            ratios = [p / q for p, q in zip(py, c, strict=True)]
            row.update({"lxcfs": round(statistics.median(c)), "lxcfs_range": [round(min(c)), round(max(c))],
                        "lxcfs_all": c, "ratio": round(statistics.median(ratios), 3),
                        "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
                        "ratio_of_medians": round(statistics.median(py) / statistics.median(c), 3)})
        else:
            row.update({"lxcfs": None, "lxcfs_range": None, "ratio": None, "ratio_range": None})
        rows.append(row)
    return rows


def _ns_ready(p: subprocess.Popen[bytes]) -> bool:
    """The namespace's init (grandchild: sh -> unshare -> sh) has done its reads and exec'd sleep."""
    for kid in _children(p.pid):
        for init in _children(kid) or [kid]:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{init}/comm").read_text().strip() == "sleep":
                    return True
    return False


@contextlib.contextmanager
def namespaces(n: int, parent: dict[str, Path], mnts: list[Path], tag: str) -> Iterator[dict[str, float]]:
    """n container-like processes: each pid 1 of its own pid namespace, in its own child cgroups (one cpu
    cgroup each: n cgroups for the loadavg samplers), having read meminfo and loadavg of both daemons once
    (which is what makes the daemons cache the namespace and sample its cgroup). Yields once every one of
    them has finished its reads (so the idle measurement that follows sees no request)."""
    procs: list[subprocess.Popen[bytes]] = []
    dirs_list = []
    reads = " ".join(f"cat {m}/{f} >/dev/null 2>&1;" for m in mnts for f in ("proc/meminfo", "proc/loadavg"))
    t0 = time.monotonic()
    try:
        for i in range(n):
            dirs = child_cgroups(parent, f"{tag}{i}")
            dirs_list.append(dirs)
            sh = f"{join_prefix(dirs)}; exec unshare --pid --fork sh -c '{reads} exec sleep 100000'"
            procs.append(subprocess.Popen(["sh", "-c", sh], stdin=subprocess.DEVNULL))
        deadline = time.monotonic() + 60 + n * 0.2
        waiting = list(procs)
        while waiting and time.monotonic() < deadline:
            waiting = [p for p in waiting if not _ns_ready(p)]
            if waiting:
                time.sleep(0.1)
        if waiting:
            raise SystemExit(f"{len(waiting)} of {n} namespaces did not finish their reads")
        yield {"setup_s": round(time.monotonic() - t0, 1)}
    finally:
        for p in procs:
            for kid in _children(p.pid):
                for init in _children(kid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(init, signal.SIGKILL)
            p.kill()
        for p in procs:
            p.wait()
        for dirs in dirs_list:
            for d in dirs.values():
                kill_members(d)
        time.sleep(0.2)
        for dirs in dirs_list:
            for d in dirs.values():
                for _ in range(20):
                    try:
                        d.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.05)


def fmt_table(rows: list[dict[str, object]], title: str, sizes: dict[str, dict[str, int]]) -> str:
    head = ("| file | bytes lxcfs/pylxcfs | lxcfs ops/s (median) | spread lxcfs | pylxcfs ops/s (median) "
            "| spread pylxcfs | pylxcfs/lxcfs (median of rounds) | ratio range |")
    lines = [f"### {title}", "", head, "|---|---|---:|---|---:|---|---:|---|"]
    for r in rows:
        lr, pr, rr = r["lxcfs_range"], r["pylxcfs_range"], r["ratio_range"]
        assert isinstance(pr, list)
        sz = sizes.get(str(r["file"]), {})
        b = f"{sz.get('lxcfs', '-')}/{sz.get('pylxcfs', '-')}"
        if not isinstance(lr, list) or not isinstance(rr, list):
            lines.append(f"| {r['file']} | {b} | (not served) | - | {r['pylxcfs']} | {pr[0]}-{pr[1]} | - | - |")
            continue
        lines.append(f"| {r['file']} | {b} | {r['lxcfs']} | {lr[0]}-{lr[1]} | {r['pylxcfs']} | {pr[0]}-{pr[1]} "
                     f"| {r['ratio']:.2f}x | {rr[0]:.2f}-{rr[1]:.2f} |")
    return "\n".join(lines)


def fmt_memory(mem: dict[str, dict[str, object]], title: str) -> str:
    lines = [f"### {title}", "", "| daemon | process | pid | RSS KiB | PSS KiB | RssAnon KiB |",
             "|---|---|---:|---:|---:|---:|"]
    for name, m in mem.items():
        procs = m["processes"]
        assert isinstance(procs, list)
        for p in procs:
            lines.append(f"| {name} | {p['role']} | {p['pid']} | {p['rss_kib']} | {p['pss_kib']} | {p['anon_kib']} |")
        lines.append(f"| **{name}** | **all processes** | | **{m['rss_all']}** | **{m['pss_all']}** | |")
    return "\n".join(lines)


def bytes_served(daemons: list[Daemon], dirs: dict[str, Path]) -> dict[str, dict[str, int]]:
    """What each daemon serves the reader, per file (sizes), so the tables compare known work."""
    out: dict[str, dict[str, int]] = {}
    for f in FILES:
        out[f] = {}
        for d in daemons:
            if (d.mnt / f).exists():
                sh = f"{join_prefix(dirs)}; exec unshare --pid --fork cat {d.mnt}/{f}"
                out[f][d.name] = len(subprocess.run(["sh", "-c", sh], capture_output=True, check=True).stdout)
    return out


def _loadavg() -> str:
    """The host's 1/5/15-minute load (the machine may be shared: say how busy it was)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--opens", type=int, default=3000, help="opens per reader process per measurement")
    ap.add_argument("--ns-counts", default="1,100,1000")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="1 round, fewer opens, namespaces 1,10 (smoke run)")
    ap.add_argument("--skip-scaling", action="store_true", help="only the pinned/unpinned tables and memory")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.opens, args.ns_counts, args.idle_seconds = 1, 500, "1,10", 3.0
    if os.geteuid() != 0:
        raise SystemExit("make bench needs root (cgroups, FUSE mounts, pid namespaces)")
    lxcfs_bin = shutil.which("lxcfs")
    if not lxcfs_bin:
        raise SystemExit("the C lxcfs is not installed (Debian package lxcfs; `make install` installs it)")
    reader = build_reader()
    tag = f"pylxcfs-bench-{os.getpid()}"
    tmp = Path(tempfile.mkdtemp(prefix="pylxcfs-bench-"))
    dirs = make_cgroups(tag)
    daemons: list[Daemon] = []
    t_start = time.monotonic()
    report: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
        "machine": platform.machine(), "cpus": os.cpu_count(), "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "lxcfs_version": subprocess.run(["dpkg-query", "-W", "-f=${Version}", "lxcfs"], capture_output=True,
                                        text=True).stdout or "unknown",
        "args": vars(args), "loadavg_start": _loadavg(),
    }
    one, allcpus = {0}, set(range(os.cpu_count() or 1))
    try:
        daemons.append(start("lxcfs", [lxcfs_bin, "-f", "-l", "-p", str(tmp / "lxcfs.pid"), str(tmp / "c")], tmp / "c"))
        daemons.append(start("pylxcfs", [str(REPO / ".venv/bin/pylxcfs"), "-f", "-l", "-p", str(tmp / "py.pid"),
                                         str(tmp / "py")], tmp / "py"))
        time.sleep(0.5)
        report["processes"] = {d.name: {str(k): v for k, v in d.roles().items()} for d in daemons}
        report["disk_stats"] = give_disk_stats(dirs, tmp)
        # sanity: both daemons see the reader as a 1 GiB container
        for d in daemons:
            sh = f"{join_prefix(dirs)}; exec unshare --pid --fork cat {d.mnt}/proc/meminfo"
            head = subprocess.run(["sh", "-c", sh], capture_output=True, text=True, check=True).stdout.splitlines()[0]
            report[f"{d.name}_memtotal"] = head
            print(f"{d.name}: {head}  processes {d.roles()}", file=sys.stderr)
            if "1048576 kB" not in head:
                raise SystemExit(f"{d.name} does not see the reader as a 1 GiB container: {head}")
        served: dict[str, dict[str, dict[str, int]]] = {}
        report["bytes_served"] = served
        served["pinned"] = bytes_served(daemons, dirs)
        print("pinned phase (daemons and reader on CPU 0, 1 reader)", file=sys.stderr)
        report["pinned"] = {d.name: pin(d, one) for d in daemons}
        pinned = summarize(phase(reader, dirs, daemons, args.rounds, args.opens, 1, "0"))
        for d in daemons:
            bad = check_pinned(d, one)
            if bad:
                raise SystemExit(f"{d.name}: threads escaped the pinning during the phase: {bad}")
        print("unpinned phase (4 readers)", file=sys.stderr)
        for d in daemons:
            pin(d, allcpus)
        # Truly unpinned: the container's cpuset is widened to every CPU for this phase (its cpuinfo, stat and
        # online then show all CPUs, on both daemons alike), so readers and daemons share the whole machine.
        (dirs["cpuset"] / "cpuset.cpus").write_text(f"0-{max(allcpus)}")
        served["unpinned"] = bytes_served(daemons, dirs)
        unpinned = summarize(phase(reader, dirs, daemons, args.rounds, max(args.opens // 2, 100), 4, None))
        (dirs["cpuset"] / "cpuset.cpus").write_text("0")
        report["pinned_1_reader"] = pinned
        report["unpinned_4_readers"] = unpinned
        report["memory_after_phases"] = {d.name: memory_kib(d) for d in daemons}

        scaling = []
        for n in [] if args.skip_scaling else [int(x) for x in args.ns_counts.split(",")]:
            print(f"namespace scaling: {n} live pid namespaces", file=sys.stderr)
            with namespaces(n, dirs, [d.mnt for d in daemons], f"ns{n}-") as info:
                row: dict[str, object] = {"namespaces": n, **info}
                for d in daemons:
                    pin(d, one)
                rates: dict[str, list[float]] = {d.name: [] for d in daemons}
                for _ in range(3):
                    for d in random.sample(daemons, len(daemons)):
                        rates[d.name].append(run_reader(reader, dirs, d.mnt / "proc/meminfo", args.opens, 1, "0"))
                for d in daemons:
                    row[f"{d.name}_us_per_read"] = round(1e6 / statistics.median(rates[d.name]), 1)
                    pin(d, allcpus)
                before = {d.name: cpu_seconds(d) for d in daemons}
                t0 = time.monotonic()
                time.sleep(args.idle_seconds)
                dt = time.monotonic() - t0
                for d in daemons:
                    used = cpu_seconds(d) - before[d.name]
                    row[f"{d.name}_idle_cpu_pct"] = round(100 * used / dt, 2)
                row["memory"] = {d.name: memory_kib(d) for d in daemons}
                scaling.append(row)
                print(f"  {n}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "memory"), file=sys.stderr)
        report["namespace_scaling"] = scaling
    finally:
        for d in daemons:
            stop(d)
        remove_cgroups(dirs)
        shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = _loadavg()
    report["duration_s"] = round(time.monotonic() - t_start)

    mem = report["memory_after_phases"]
    sizes = report["bytes_served"]
    assert isinstance(mem, dict) and isinstance(sizes, dict)
    out = [
        f"Machine: {report['machine']} ({report['cpu_model']}), {report['cpus']} CPUs, kernel {report['kernel']}, "
        f"Python {report['python']}, lxcfs {report['lxcfs_version']}; {report['date']}; "
        f"{args.rounds} rounds x {args.opens} opens; host loadavg {report['loadavg_start']} at start, "
        f"{report['loadavg_end']} at end; {report['duration_s']} s. diskstats: {report['disk_stats']}",
        "",
        fmt_table(pinned, "1 reader; daemons (every thread) and reader pinned to CPU 0; opens+read+close per second",
                  sizes["pinned"]),
        "",
        fmt_table(unpinned, "4 concurrent readers; daemons and readers unpinned (container cpuset = all CPUs)",
                  sizes["unpinned"]),
        "",
        fmt_memory(mem, "Memory after the two phases (held against the goal: pylxcfs PSS of all processes)"),
    ]
    if scaling:
        out += ["", "### Live container-like pid namespaces (each read meminfo+loadavg once; -l on both daemons)", "",
                "| namespaces | lxcfs us/read | pylxcfs us/read | lxcfs idle CPU % | pylxcfs idle CPU % "
                "| lxcfs RSS/PSS KiB | pylxcfs RSS/PSS KiB (all processes) |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for row in scaling:
            m = row["memory"]
            assert isinstance(m, dict)
            out.append(f"| {row['namespaces']} | {row['lxcfs_us_per_read']} | {row['pylxcfs_us_per_read']} "
                       f"| {row['lxcfs_idle_cpu_pct']} | {row['pylxcfs_idle_cpu_pct']} "
                       f"| {m['lxcfs']['rss_all']}/{m['lxcfs']['pss_all']} "
                       f"| {m['pylxcfs']['rss_all']}/{m['pylxcfs']['pss_all']} |")
        out.append(f"\nidle CPU = CPU time of all the daemon's processes over {args.idle_seconds:g} s with no reader "
                   "running (the loadavg sampler's cost); us/read = 1e6 / median opens/s of meminfo, pinned.")
    text = "\n".join(out)
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    (OUT / "results.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
