"""`make bench`: pylxcfs against the C lxcfs, side by side, every virtual file.

What it does (issue 5):
1. Builds bench/reader.c (open -> read to EOF -> close in a loop, P forked processes released together).
2. Creates a limited v1 cgroup set (memory 1 GiB, cpuset 0, cpu, cpuacct, blkio) owned by the benchmark.
3. Starts the C lxcfs (Debian package `lxcfs`) and pylxcfs on two temporary mount points, both with -l.
4. Pinned phase: both daemons and the reader on CPU 0; for every file, interleaved rounds in random order;
   medians of opens/s and the ratio pylxcfs/lxcfs. Unpinned phase: the same with 4 concurrent readers.
5. Daemons' RSS; reader throughput with 1, 100 and 1000 live container-like pid namespaces that each
   read the files once (so per-namespace caches are populated); the daemons' CPU use while idle with those
   namespaces alive (the loadavg samplers' cost).
Every reader runs in the limited cgroups and in its own pid namespace, so both daemons see a container.
Results: a table on stdout and bench/out/results.json. Nothing here asserts a speed; this is a measurement.
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
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
CG = "/sys/fs/cgroup"
CONTROLLERS = ("memory", "cpuset", "cpu", "cpuacct", "blkio")
FILES = (
    "proc/meminfo", "proc/cpuinfo", "proc/stat", "proc/uptime", "proc/loadavg", "proc/swaps",
    "proc/diskstats", "proc/partitions", "sys/devices/system/cpu/online",
)


@dataclass
class Daemon:
    name: str
    mnt: Path
    proc: subprocess.Popen[bytes]
    pids: list[int] = field(default_factory=list)

    def tree(self) -> list[int]:
        """The daemon's pid and its descendants (pylxcfs runs a supervisor and a worker)."""
        out = [self.proc.pid]
        frontier = [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            with contextlib.suppress(OSError):
                for tid in os.listdir(f"/proc/{pid}/task"):
                    kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
                    out += [int(k) for k in kids]
                    frontier += [int(k) for k in kids]
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


def pin(d: Daemon, cpus: str) -> None:
    for pid in d.tree():
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=False, stdout=subprocess.DEVNULL)


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


def rss_kib(d: Daemon) -> int:
    total = 0
    for pid in d.tree():
        with contextlib.suppress(OSError):
            m = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
            total += int(m.group(1)) if m else 0
    return total


def cpu_seconds(d: Daemon) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in d.tree():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def phase(reader: Path, dirs: dict[str, Path], daemons: list[Daemon], rounds: int, opens: int,
          procs: int, cpus: str | None) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {f: {d.name: [] for d in daemons} for f in FILES}
    for r in range(rounds):
        for f in FILES:
            # The C lxcfs serves no proc/partitions (that file is iSulad's addition): measure ours alone.
            order = [d for d in daemons if (d.mnt / f).exists()]
            random.shuffle(order)
            for d in order:
                results[f][d.name].append(run_reader(reader, dirs, d.mnt / f, opens, procs, cpus))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return results


def summarize(results: dict[str, dict[str, list[float]]]) -> list[dict[str, object]]:
    rows = []
    for f, by in results.items():
        p = statistics.median(by["pylxcfs"])
        if not by["lxcfs"]:
            rows.append({"file": f, "lxcfs": None, "pylxcfs": round(p), "ratio": None, "lxcfs_range": None,
                         "pylxcfs_range": [round(min(by["pylxcfs"])), round(max(by["pylxcfs"]))]})
            continue
        c = statistics.median(by["lxcfs"])
        rows.append({
            "file": f, "lxcfs": round(c), "pylxcfs": round(p), "ratio": round(p / c, 3),
            "lxcfs_range": [round(min(by["lxcfs"])), round(max(by["lxcfs"]))],
            "pylxcfs_range": [round(min(by["pylxcfs"])), round(max(by["pylxcfs"]))],
        })
    return rows


@contextlib.contextmanager
def namespaces(n: int, parent: dict[str, Path], mnts: list[Path], tag: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """n container-like processes: each pid 1 of its own pid namespace, in its own child cgroups, having read
    every file of both daemons once (which is what makes the daemons cache and sample them)."""
    procs = []
    dirs_list = []
    reads = " ".join(f"cat {m}/{f} >/dev/null 2>&1;" for m in mnts for f in ("proc/meminfo", "proc/loadavg"))
    try:
        for i in range(n):
            dirs = child_cgroups(parent, f"{tag}{i}")
            dirs_list.append(dirs)
            sh = f"{join_prefix(dirs)}; exec unshare --pid --fork sh -c '{reads} exec sleep 100000'"
            procs.append(subprocess.Popen(["sh", "-c", sh], stdin=subprocess.DEVNULL))
        time.sleep(1.0 + n / 200)
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        for dirs in dirs_list:
            for d in dirs.values():
                kill_members(d)
        time.sleep(0.2)
        for dirs in dirs_list:
            for d in dirs.values():
                with contextlib.suppress(OSError):
                    d.rmdir()


def fmt_table(rows: list[dict[str, object]], title: str) -> str:
    head = "| file | lxcfs ops/s | pylxcfs ops/s | pylxcfs/lxcfs | spread lxcfs | spread pylxcfs |"
    lines = [f"### {title}", "", head, "|---|---:|---:|---:|---|---|"]
    for r in rows:
        lr, pr = r["lxcfs_range"], r["pylxcfs_range"]
        assert isinstance(pr, list)
        if not isinstance(lr, list):
            lines.append(f"| {r['file']} | (not served) | {r['pylxcfs']} | - | - | {pr[0]}-{pr[1]} |")
            continue
        lines.append(f"| {r['file']} | {r['lxcfs']} | {r['pylxcfs']} | {r['ratio']:.2f}x "
                     f"| {lr[0]}-{lr[1]} | {pr[0]}-{pr[1]} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--opens", type=int, default=3000, help="opens per reader process per measurement")
    ap.add_argument("--ns-counts", default="1,100,1000")
    ap.add_argument("--idle-seconds", type=float, default=20.0)
    ap.add_argument("--quick", action="store_true", help="1 round, fewer opens, namespaces 1,10 (smoke run)")
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
    report: dict[str, object] = {
        "date": time.strftime("%Y-%m-%d"), "kernel": platform.release(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "lxcfs_version": subprocess.run([lxcfs_bin, "--version"], capture_output=True, text=True).stdout.strip()
        or subprocess.run(["dpkg-query", "-W", "-f=${Version}", "lxcfs"], capture_output=True, text=True).stdout,
    }
    try:
        daemons.append(start("lxcfs", [lxcfs_bin, "-f", "-l", "-p", str(tmp / "lxcfs.pid"), str(tmp / "c")], tmp / "c"))
        daemons.append(start("pylxcfs", [str(REPO / ".venv/bin/pylxcfs"), "-f", "-l", "-p", str(tmp / "py.pid"),
                                         str(tmp / "py")], tmp / "py"))
        time.sleep(0.5)
        # sanity: both daemons see the reader as a 1 GiB container
        for d in daemons:
            sh = f"{join_prefix(dirs)}; exec unshare --pid --fork cat {d.mnt}/proc/meminfo"
            head = subprocess.run(["sh", "-c", sh], capture_output=True, text=True, check=True).stdout.splitlines()[0]
            report[f"{d.name}_memtotal"] = head
            print(f"{d.name}: {head}", file=sys.stderr)

        print("pinned phase (daemons and reader on CPU 0, 1 reader)", file=sys.stderr)
        for d in daemons:
            pin(d, "0")
        pinned = summarize(phase(reader, dirs, daemons, args.rounds, args.opens, 1, "0"))
        print("unpinned phase (4 readers)", file=sys.stderr)
        allcpus = f"0-{(os.cpu_count() or 1) - 1}"
        for d in daemons:
            pin(d, allcpus)
        unpinned = summarize(phase(reader, dirs, daemons, args.rounds, max(args.opens // 2, 100), 4, None))
        report["pinned_1_reader"] = pinned
        report["unpinned_4_readers"] = unpinned
        report["rss_kib"] = {d.name: rss_kib(d) for d in daemons}

        scaling = []
        for n in [int(x) for x in args.ns_counts.split(",")]:
            with namespaces(n, dirs, [d.mnt for d in daemons], f"ns{n}-"):
                for d in daemons:
                    pin(d, "0")
                row: dict[str, object] = {"namespaces": n}
                for d in daemons:
                    rates = [run_reader(reader, dirs, d.mnt / "proc/meminfo", args.opens, 1, "0") for _ in range(3)]
                    row[f"{d.name}_us_per_read"] = round(1e6 / statistics.median(rates), 1)
                for d in daemons:
                    pin(d, allcpus)
                before = {d.name: cpu_seconds(d) for d in daemons}
                time.sleep(args.idle_seconds)
                for d in daemons:
                    used = cpu_seconds(d) - before[d.name]
                    row[f"{d.name}_idle_cpu_pct"] = round(100 * used / args.idle_seconds, 2)
                row["rss_kib"] = {d.name: rss_kib(d) for d in daemons}
                scaling.append(row)
                print(f"  {row}", file=sys.stderr)
        report["namespace_scaling"] = scaling
    finally:
        for d in daemons:
            stop(d)
        remove_cgroups(dirs)
        shutil.rmtree(tmp, ignore_errors=True)

    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    print(f"\nMachine: {report['machine']}, {report['cpus']} CPUs, kernel {report['kernel']}, Python "
          f"{report['python']}, lxcfs {report['lxcfs_version']}, {report['date']}\n")
    print(fmt_table(pinned, "1 reader, daemons and reader pinned to CPU 0 (medians of opens/s)"))
    print()
    print(fmt_table(unpinned, "4 concurrent readers, unpinned"))
    print()
    print("| daemon | RSS KiB |\n|---|---:|")
    rss = report["rss_kib"]
    assert isinstance(rss, dict)
    for k, v in rss.items():
        print(f"| {k} | {v} |")
    print("\n| live pid namespaces | lxcfs us/read | pylxcfs us/read | lxcfs idle CPU % | pylxcfs idle CPU % |")
    print("|---:|---:|---:|---:|---:|")
    for row in scaling:
        print(f"| {row['namespaces']} | {row['lxcfs_us_per_read']} | {row['pylxcfs_us_per_read']} | "
              f"{row['lxcfs_idle_cpu_pct']} | {row['pylxcfs_idle_cpu_pct']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
