"""`make bench`: pylxcfs against the C lxcfs, side by side, every virtual file, in several regimes.

What it does:
1. Builds bench/reader.c (open -> read to EOF -> close in a loop, P forked processes released together).
2. Creates a limited v1 cgroup set (memory 1 GiB, cpuset 0, cpu, cpuacct, blkio) owned by the benchmark.
3. Starts the C lxcfs (Debian package `lxcfs`, on PATH) and pylxcfs (its default worker pool, or --workers N) on
   two temporary mount points, both with -l.
4. Speed, as opens+read+close per second, every file, in interleaved rounds (per round every file on both
   daemons back to back, orders shuffled; the ratio pylxcfs/lxcfs is the median of the per-round ratios):
   - pinned: EVERY thread of every process of both daemons (read back before and after) and one reader on CPU 0;
   - unpinned, 1/2/4/8 containers: daemons on all CPUs, one reader in each of N containers (own pid namespace,
     own child cgroups, cpuset = all CPUs), all released at the same instant (bench/load.py); aggregate opens/s.
5. Fairness: another container's open+read latency (median, p99) unloaded and during a 48-process flood from
   one container, both daemons (bench/load.py).
6. Memory of every process of each daemon (pylxcfs: supervisor, every worker, watchdog, sysinfo agent if
   running) as RSS and PSS: at rest, after the speed phases, with 1, 100 and 1000 live container-like pid
   namespaces (each in its own cgroups, having read the files once, so per-namespace caches and the loadavg
   samplers are populated; also the reader cost and the daemons' idle CPU there), and with 40,000 open handles
   (bench/handles_memory.py).
Every reader runs in the limited cgroups and in its own pid namespace, so both daemons see a container.
Results: tables on stdout, bench/out/results.md and bench/out/results.json (every sample). Nothing here
asserts a speed; this is a measurement. Default run: about 5 minutes on 2 idle CPUs (much longer on a busy
machine; --nice -10 shields it from other work); --quick (make bench-quick): about 1 minute.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from bench import handles_memory, load
from bench.harness import (
    OUT,
    REPO,
    Daemon,
    build_reader,
    check_pinned,
    child_cgroups,
    children,
    cpu_seconds,
    give_disk_stats,
    join_prefix,
    kill_members,
    make_cgroups,
    memory_kib,
    pin,
    remove_cgroups,
    run_reader,
    start,
    stop,
)
from pylxcfs.views.registry import VIEW_PATHS

FILES = VIEW_PATHS  # every file of the registry (views/registry.py)
CONTAINERS = 8  # container cgroup sets created for the concurrent regimes (the largest N)
FAIR_FILE = "proc/meminfo"
Results = dict[str, dict[str, list[float]]]


def phase(daemons: list[Daemon], rounds: int, measure: Callable[[Daemon, str], float], label: str) -> Results:
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
                results[f][d.name].append(measure(d, f))
        print(f"  {label}: round {r + 1}/{rounds} done", file=sys.stderr)
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
    for kid in children(p.pid):
        for init in children(kid) or [kid]:
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
            for kid in children(p.pid):
                for init in children(kid):
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



def fmt_ratios(regimes: dict[str, list[dict[str, object]]]) -> str:
    """One line per file, one column per regime: the median per-round ratio pylxcfs/lxcfs."""
    names = list(regimes)
    lines = ["### pylxcfs/lxcfs per file and regime (median of per-round ratios; > 1 = pylxcfs faster)", "",
             "| file | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    by_file: dict[str, dict[str, object]] = {}
    for name, rows in regimes.items():
        for r in rows:
            by_file.setdefault(str(r["file"]), {})[name] = r["ratio"]
    below: list[str] = []
    for f, cols in by_file.items():
        cells = []
        for name in names:
            v = cols.get(name)
            if not isinstance(v, float):
                cells.append("-")
                continue
            cells.append(f"{v:.2f}x" if v >= 1.0 else f"**{v:.2f}x**")
            if v < 1.0:
                below.append(f"{f} ({name}, {v:.2f}x)")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    lines.append("\nBelow 1.0x (bold): " + ("; ".join(below) if below else "none"))
    return "\n".join(lines)


def fmt_memory_summary(rows: dict[str, dict[str, dict[str, object]]], goal_note: str) -> str:
    """RSS/PSS of all processes of each daemon at each point of the run."""
    points = list(next(iter(rows.values())))
    lines = ["### Memory of all processes (RSS / PSS, KiB)", "",
             "| daemon | processes | " + " | ".join(points) + " |", "|---|---|" + "---:|" * len(points)]
    for name, by in rows.items():
        rest = by[points[0]]
        procs = rest["processes"]
        assert isinstance(procs, list)
        roles: dict[str, int] = {}
        for p in procs:
            roles[str(p["role"])] = roles.get(str(p["role"]), 0) + 1
        who = ", ".join(f"{n} {r}" for r, n in sorted(roles.items()))
        lines.append(f"| {name} | {who} | " + " | ".join(f"{m['rss_all']} / {m['pss_all']}" for m in by.values())
                     + " |")
    lines.append(f"\n{goal_note}")
    return "\n".join(lines)


def _in_containers(reader: Path, cts: list[dict[str, Path]], each: int) -> Callable[[Daemon, str], float]:
    def measure(d: Daemon, f: str) -> float:
        return load.concurrent(reader, cts, d.mnt / f, each)
    return measure


def _supports(flag: str) -> bool:
    res = subprocess.run([str(REPO / ".venv/bin/pylxcfs"), "--help"], capture_output=True, text=True, check=False)
    return flag in res.stdout


SETTLE_S = 3.0


def settle() -> None:
    """After a change of the daemons' CPU affinity: pylxcfs without --workers resizes its pool to the CPUs it may
    run on (checked every second; a retiring worker has a 1 s grace, a new one needs a fresh zygote), so both
    daemons get this long before a phase is timed."""
    time.sleep(SETTLE_S)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--opens", type=int, default=3000, help="opens per measurement (split over the containers)")
    ap.add_argument("--containers", default="1,2,4,8", help="concurrent regimes: readers in N containers")
    ap.add_argument("--ns-counts", default="1,100,1000")
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--handles", type=int, default=40000)
    ap.add_argument("--fairness-samples", type=int, default=500)
    ap.add_argument("--fairness-reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="pylxcfs --workers N (default: pylxcfs's own)")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the whole benchmark (both daemons, every reader) at this nice value, e.g. -10 on a "
                         "machine other work keeps busy; both daemons alike")
    ap.add_argument("--quick", action="store_true", help="1 round, fewer opens/handles/samples (smoke run)")
    ap.add_argument("--skip-scaling", action="store_true", help="no namespace scaling")
    ap.add_argument("--skip-handles", action="store_true", help="no open-handles memory")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.opens, args.ns_counts, args.idle_seconds = 1, 600, "1,10", 2.0
        args.handles, args.fairness_samples, args.fairness_reps = 4000, 200, 1
    if os.geteuid() != 0:
        raise SystemExit("make bench needs root (cgroups, FUSE mounts, pid namespaces)")
    lxcfs_bin = shutil.which("lxcfs")
    if not lxcfs_bin:
        raise SystemExit("the C lxcfs is not installed (Debian package lxcfs; `make install` installs it)")
    py_extra: list[str] = []
    if args.workers is not None:
        if not _supports("--workers"):
            raise SystemExit("this pylxcfs has no --workers (single worker): run without --workers")
        py_extra = ["--workers", str(args.workers)]
    counts = [int(x) for x in args.containers.split(",")]
    if max(counts) > CONTAINERS or min(counts) < 1:
        raise SystemExit(f"--containers: 1..{CONTAINERS}")
    # SIGTERM (a timeout, a CI job cancelled) unwinds like ^C, so the finally below stops both daemons, unmounts
    # and removes the cgroups.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.nice:
        os.nice(args.nice)  # inherited by both daemons and every reader started below
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
        "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip() or "unknown",
        "args": vars(args), "loadavg_start": _loadavg(),
    }
    one, allcpus = {0}, set(range(os.cpu_count() or 1))
    all_list = f"0-{max(allcpus)}"
    memory: dict[str, dict[str, dict[str, object]]] = {}
    regimes: dict[str, list[dict[str, object]]] = {}
    served: dict[str, dict[str, dict[str, int]]] = {}
    report["bytes_served"] = served
    scaling: list[dict[str, object]] = []
    fair: dict[str, dict[str, object]] = {}
    handles: dict[str, dict[str, object]] = {}
    try:
        daemons.append(start("lxcfs", [lxcfs_bin, "-f", "-l", "-p", str(tmp / "lxcfs.pid"), str(tmp / "c")], tmp / "c"))
        daemons.append(start("pylxcfs", [str(REPO / ".venv/bin/pylxcfs"), "-f", "-l", *py_extra,
                                         "-p", str(tmp / "py.pid"), str(tmp / "py")], tmp / "py"))
        time.sleep(0.5)
        report["disk_stats"] = give_disk_stats(dirs, tmp)
        # sanity: both daemons see the reader as a 1 GiB container
        for d in daemons:
            sh = f"{join_prefix(dirs)}; exec unshare --pid --fork cat {d.mnt}/proc/meminfo"
            head = subprocess.run(["sh", "-c", sh], capture_output=True, text=True, check=True).stdout.splitlines()[0]
            report[f"{d.name}_memtotal"] = head
            print(f"{d.name}: {head}  processes {d.roles()}", file=sys.stderr)
            if "1048576 kB" not in head:
                raise SystemExit(f"{d.name} does not see the reader as a 1 GiB container: {head}")
        time.sleep(1.0)
        report["processes"] = {d.name: {str(k): v for k, v in d.roles().items()} for d in daemons}
        for d in daemons:
            memory[d.name] = {"at rest": memory_kib(d)}

        served["pinned"] = bytes_served(daemons, dirs)
        print("pinned regime (daemons and reader on CPU 0, 1 reader)", file=sys.stderr)
        report["pinned"] = {d.name: pin(d, one) for d in daemons}
        settle()
        regimes["pinned, 1 reader"] = summarize(phase(
            daemons, args.rounds, lambda d, f: run_reader(reader, dirs, d.mnt / f, args.opens, 1, "0"), "pinned"))
        print(fmt_ratios(regimes), file=sys.stderr)
        for d in daemons:
            bad = check_pinned(d, one)
            if bad:
                raise SystemExit(f"{d.name}: threads escaped the pinning during the phase: {bad}")
            pin(d, allcpus)
        settle()

        # Unpinned: the containers' cpusets are every CPU (cpuinfo, stat and online then show all CPUs, on both
        # daemons alike), so readers and daemons share the whole machine.
        (dirs["cpuset"] / "cpuset.cpus").write_text(all_list)
        cts = [child_cgroups(dirs, f"ct{i}", all_list) for i in range(CONTAINERS)]
        for c in cts:  # each container did some I/O of its own, so diskstats has its rows on pylxcfs
            give_disk_stats(c, tmp)
        served["unpinned"] = bytes_served(daemons, cts[0])
        for n in counts:
            label = f"unpinned, {n} container{'s' if n > 1 else ''}"
            each = max(args.opens // n, 250)
            print(f"{label} ({each} opens each)", file=sys.stderr)
            regimes[label] = summarize(phase(daemons, args.rounds, _in_containers(reader, cts[:n], each), label))
            print(fmt_ratios({label: regimes[label]}), file=sys.stderr)  # progress: this regime's ratios
        print(f"fairness: a victim container during a {load.FLOOD_PROCS}-process flood", file=sys.stderr)
        fair = load.fairness(reader, daemons, cts[0], cts[1], FAIR_FILE, args.fairness_samples, args.fairness_reps)
        print(load.fmt_fairness(fair, FAIR_FILE, args.fairness_samples, args.fairness_reps), file=sys.stderr)
        for c in cts:
            (c["cpuset"] / "cpuset.cpus").write_text("0")
        (dirs["cpuset"] / "cpuset.cpus").write_text("0")
        for d in daemons:
            memory[d.name]["after the speed phases"] = memory_kib(d)

        for n in [] if args.skip_scaling else [int(x) for x in args.ns_counts.split(",")]:
            print(f"namespace scaling: {n} live pid namespaces", file=sys.stderr)
            with namespaces(n, dirs, [d.mnt for d in daemons], f"ns{n}-") as info:
                row: dict[str, object] = {"namespaces": n, **info}
                for d in daemons:
                    pin(d, one)
                settle()
                rates: dict[str, list[float]] = {d.name: [] for d in daemons}
                for _ in range(3):
                    for d in random.sample(daemons, len(daemons)):
                        rates[d.name].append(run_reader(reader, dirs, d.mnt / "proc/meminfo", args.opens, 1, "0"))
                for d in daemons:
                    row[f"{d.name}_us_per_read"] = round(1e6 / statistics.median(rates[d.name]), 1)
                    pin(d, allcpus)
                settle()
                before = {d.name: cpu_seconds(d) for d in daemons}
                t0 = time.monotonic()
                time.sleep(args.idle_seconds)
                dt = time.monotonic() - t0
                for d in daemons:
                    used = cpu_seconds(d) - before[d.name]
                    row[f"{d.name}_idle_cpu_pct"] = round(100 * used / dt, 2)
                row["memory"] = {d.name: memory_kib(d) for d in daemons}
                for d in daemons:
                    memory[d.name][f"{n} namespaces"] = row["memory"][d.name]  # type: ignore[index]
                scaling.append(row)
                print(f"  {n}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "memory"), file=sys.stderr)

        if not args.skip_handles:
            print(f"memory with {args.handles} open handles", file=sys.stderr)
            handles = handles_memory.measure(daemons, dirs, args.handles)
            for d in daemons:
                worst = max((v for k, v in handles[d.name].items() if k != "rest" and not k.startswith("after")
                             and isinstance(v, dict)), key=lambda m: int(str(m["pss_all"])))
                memory[d.name][f"{args.handles} handles (worst regime)"] = worst
    finally:
        for d in daemons:
            stop(d)
        remove_cgroups(dirs)
        shutil.rmtree(tmp, ignore_errors=True)
    report["loadavg_end"] = _loadavg()
    report["duration_s"] = round(time.monotonic() - t_start)
    report["regimes"] = regimes
    report["fairness"] = fair
    report["memory"] = memory
    report["namespace_scaling"] = scaling
    report["handles"] = handles

    workers = sum(1 for r in d_roles(report, "pylxcfs") if r == "worker")
    out = [
        f"Machine: {report['machine']} ({report['cpu_model']}), {report['cpus']} CPUs, kernel {report['kernel']}, "
        f"Python {report['python']}, lxcfs {report['lxcfs_version']}; pylxcfs {report['commit']} with {workers} "
        f"worker(s); {report['date']}; {args.rounds} rounds x {args.opens} opens; nice {args.nice}; host loadavg "
        f"{report['loadavg_start']} at start, {report['loadavg_end']} at end; {report['duration_s']} s. "
        f"diskstats: {report['disk_stats']}",
        "",
        fmt_ratios(regimes),
        "",
        fmt_fairness_or_none(fair, args),
        "",
        fmt_memory_summary(memory, "All processes of each daemon (pylxcfs: supervisor, workers, watchdog, sysinfo "
                           "agent if running); PSS counts a page shared by k processes 1/k in each. Goal for "
                           "pylxcfs: PSS <= 40 MB (40960 KiB) with the default pool."),
    ]
    for name, rows in regimes.items():
        sizes = served["pinned" if name.startswith("pinned") else "unpinned"]
        out += ["", fmt_table(rows, f"{name}: opens+read+close per second (aggregate over the containers)", sizes)]
    rest = {d: by["at rest"] for d, by in memory.items()}
    out += ["", fmt_memory(rest, "Memory at rest, per process")]
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
    if handles:
        out += ["", handles_memory.fmt(handles, args.handles)]
    text = "\n".join(out)
    OUT.mkdir(exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(report, indent=2))
    (OUT / "results.md").write_text(text + "\n")
    print("\n" + text)
    return 0


def d_roles(report: dict[str, object], name: str) -> list[str]:
    procs = report.get("processes")
    return list(procs.get(name, {}).values()) if isinstance(procs, dict) else []


def fmt_fairness_or_none(fair: dict[str, dict[str, object]], args: argparse.Namespace) -> str:
    return load.fmt_fairness(fair, FAIR_FILE, args.fairness_samples, args.fairness_reps) if fair else ""


if __name__ == "__main__":
    raise SystemExit(main())
