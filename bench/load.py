"""Concurrent readers in different containers, and the fairness figure (parts of `make bench`).

Containers here are what the daemons see as containers: each reader runs as PID 1 of its own pid namespace
(`unshare --pid --fork`) inside its own child cgroup set (memory, cpuset, cpu, cpuacct, blkio) under the
benchmark's limited parent. Nothing here asserts a speed; these are measurements.

- `concurrent`: N containers each run one bench/reader.c (open -> read to EOF -> close in a loop), started at the
  same instant (each reader forks, says READY and waits for a byte on stdin; the harness releases them all when
  every one is ready). The figure is the aggregate opens per second: all opens / the longest reader's wall time.
- `fairness`: a victim container samples open+read+close of one file every 2 ms (bench/reader.c -L) while no
  one else reads ("unloaded") and while a flood container runs 48 reader processes on the same daemon without
  pause ("loaded"): median and p99 latency of the victim, for each daemon.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from bench.harness import Daemon, join_prefix, kill_members

FLOOD_PROCS = 48
VICTIM_INTERVAL_US = 2000


def _in_container(dirs: dict[str, Path], argv: str) -> list[str]:
    # --kill-child: if the harness kills unshare, the namespace's PID 1 (and with it every reader) dies too.
    return ["sh", "-c", f"{join_prefix(dirs)}; exec unshare --pid --fork --kill-child {argv}"]


def concurrent(reader: Path, containers: list[dict[str, Path]], path: Path, opens_each: int) -> float:
    """Aggregate opens/s of one reader in each of `containers`, all released at once."""
    procs = [subprocess.Popen(_in_container(dirs, f"{reader} -g -n {opens_each} -p 1 {path}"),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for dirs in containers]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != b"READY":
                raise SystemExit(f"reader on {path} did not start: {line!r} {p.stderr.read() if p.stderr else b''!r}")
        for p in procs:  # release every container's reader within microseconds of each other
            assert p.stdin is not None
            p.stdin.write(b"x")
            p.stdin.flush()
        outs = [p.communicate(timeout=600)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    total, longest = 0, 0.0
    for p, out in zip(procs, outs, strict=True):
        m = re.search(r"secs=([\d.]+) errors=(\d+) .*opens=(\d+)", out)
        if p.returncode != 0 or not m:
            raise SystemExit(f"reader failed on {path}: {out}")
        if int(m.group(2)):
            raise SystemExit(f"reader saw {m.group(2)} errors on {path}")
        total += int(m.group(3))
        longest = max(longest, float(m.group(1)))
    return total / longest


def victim(reader: Path, dirs: dict[str, Path], path: Path, samples: int) -> dict[str, float]:
    """Median, p99 and max latency (microseconds) of `samples` paced open+read+close from container `dirs`."""
    res = subprocess.run(_in_container(dirs, f"{reader} -L {VICTIM_INTERVAL_US} -n {samples} {path}"),
                         capture_output=True, text=True, check=False, timeout=600)
    m = re.search(r"lat_med_us=([\d.]+) lat_p99_us=([\d.]+) lat_max_us=([\d.]+) samples=\d+ errors=(\d+)", res.stdout)
    if res.returncode != 0 or not m:
        raise SystemExit(f"victim reader failed on {path}: {res.stdout} {res.stderr}")
    if int(m.group(4)):
        raise SystemExit(f"victim saw {m.group(4)} errors on {path}")
    return {"median_us": float(m.group(1)), "p99_us": float(m.group(2)), "max_us": float(m.group(3))}


@contextlib.contextmanager
def flood(reader: Path, dirs: dict[str, Path], path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """FLOOD_PROCS readers in one container hammering `path` until the block ends."""
    p = subprocess.Popen(_in_container(dirs, f"{reader} -t 600 -p {FLOOD_PROCS} {path}"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(_members(dirs)) < FLOOD_PROCS + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        if p.poll() is not None:
            raise SystemExit(f"the flood on {path} exited with {p.returncode}")
        time.sleep(0.5)  # let the flood reach its steady state
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
        p.wait()
        for _ in range(100):
            kill_members(dirs["cpu"])
            if not _members(dirs):
                break
            time.sleep(0.05)


def _members(dirs: dict[str, Path]) -> list[str]:
    try:
        return (dirs["cpu"] / "cgroup.procs").read_text().split()
    except OSError:
        return []


def fairness(reader: Path, daemons: list[Daemon], victim_ct: dict[str, Path], flood_ct: dict[str, Path],
             fname: str, samples: int, reps: int) -> dict[str, dict[str, object]]:
    """Per daemon: the victim's latency unloaded and during the flood, `reps` times each (daemons interleaved,
    unloaded and loaded back to back), with the medians over the repetitions."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {d.name: {"unloaded": [], "loaded": []} for d in daemons}
    for _ in range(reps):
        for d in daemons:
            path = d.mnt / fname
            runs[d.name]["unloaded"].append(victim(reader, victim_ct, path, samples))
            with flood(reader, flood_ct, path):
                runs[d.name]["loaded"].append(victim(reader, victim_ct, path, samples))
    out: dict[str, dict[str, object]] = {}
    for name, by in runs.items():
        row: dict[str, object] = {"runs": by}
        for state, rs in by.items():
            for k in ("median_us", "p99_us", "max_us"):
                row[f"{state}_{k}"] = round(statistics.median(r[k] for r in rs), 1)
        row["median_factor"] = round(float(str(row["loaded_median_us"])) / float(str(row["unloaded_median_us"])), 2)
        out[name] = row
    return out


def fmt_fairness(res: dict[str, dict[str, object]], fname: str, samples: int, reps: int) -> str:
    lines = [f"### Fairness: another container's open+read+close of {fname} during a {FLOOD_PROCS}-process flood "
             "from one container", "",
             "| daemon | unloaded median us | unloaded p99 us | loaded median us | loaded p99 us | loaded max us "
             "| loaded/unloaded median |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['unloaded_median_us']} | {r['unloaded_p99_us']} | {r['loaded_median_us']} "
                     f"| {r['loaded_p99_us']} | {r['loaded_max_us']} | {r['median_factor']}x |")
    lines.append(f"\nVictim: one process in its own container, {samples} samples {VICTIM_INTERVAL_US // 1000} ms "
                 f"apart; flood: {FLOOD_PROCS} reader processes without pause in another container on the same "
                 f"file and daemon; medians over {reps} repetitions (daemons interleaved). Issue goal for pylxcfs: "
                 "loaded median within 3x of unloaded, loaded p99 under 5 ms.")
    return "\n".join(lines)
