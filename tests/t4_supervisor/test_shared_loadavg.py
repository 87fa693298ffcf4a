"""Tier 4: with -l, the pool keeps ONE loadavg history per container (sharedtable.py, views/loadavg.py).

The kernel hands each read to whichever worker takes it first. A container with a busy task polls
/proc/loadavg from two processes at once (so both workers answer its reads) on the live host with real v1
cgroups: every reader must see the figures of one history (a figure never goes back to an earlier one, and with
one busy task the 1-minute figure only grows), both workers must have answered loadavg reads, and a worker
SIGKILLed halfway must take none of the history with it (the replacement goes on from where the pool was, not
from 0.00). Before the table, a per-worker history either needed every loadavg open routed to one worker or
showed two histories in turn.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylxcfs.statusdir import read_json, status_dir_for
from support import pidns
from support.cgv1 import CgroupTree
from support.fusedaemon import start_daemon, wait_for

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.slow]

# PID 1 of the container: one spinning child, two readers that read the file every 5 ms until the stop file
# appears, each writing "<monotonic> <line>" per read to its own log.
_CONTAINER = r"""
import os, sys, time
path, logdir, stop = sys.argv[1], sys.argv[2], sys.argv[3]
spin = os.fork()
if spin == 0:
    while True:
        pass
readers = []
for k in range(2):
    pid = os.fork()
    if pid == 0:
        with open(f"{logdir}/reader{k}.log", "w", buffering=1) as out:
            while not os.path.exists(stop):
                with open(path, "rb") as f:
                    line = f.read().decode()
                out.write(f"{time.monotonic():.3f} {line}")
                time.sleep(0.005)
        os._exit(0)
    readers.append(pid)
for pid in readers:
    os.waitpid(pid, 0)
os.kill(spin, 9)
"""


def _lines(logdir: Path) -> list[list[tuple[float, str]]]:
    out = []
    for k in range(2):
        rows = []
        for raw in (logdir / f"reader{k}.log").read_text().splitlines():
            t, _, line = raw.partition(" ")
            rows.append((float(t), line))
        out.append(rows)
    return out


def _read_after(log: Path, t0: float) -> bool:
    """Whether the log has a complete line of the container's (a handful of tasks) stamped after t0."""
    for raw in reversed(log.read_text().splitlines()):
        t, _, line = raw.partition(" ")
        fields = line.split()
        if len(fields) == 5 and float(t) > t0 and int(fields[3].split("/")[1]) <= 10:
            return True
    return False


def _loadavg_requests(status: Path, pids: list[int]) -> dict[int, int]:
    """proc/loadavg renders per worker, from what each one publishes in the status directory."""
    counts = {}
    for pid in pids:
        doc = read_json(status / f"worker-{pid}.json") or {}
        counts[pid] = sum(int(c.get("files", {}).get("proc/loadavg", {}).get("requests", 0))
                          for c in doc.get("containers", []))
    return counts


def test_one_history_whichever_worker_answers_and_none_lost_with_a_killed_worker(tmp_path: Path) -> None:
    tree = CgroupTree("sharedload")
    tree.create()
    d = start_daemon(tmp_path, "--workers", "2", "-l")
    logdir = tmp_path / "logs"
    logdir.mkdir()
    stop = tmp_path / "stop"
    ct: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: len(d.workers()) == 2, 15, "two workers")
        cg = tree.child("busy")
        procs = [str(p) for p in cg.procs_files()]
        ct = subprocess.Popen(pidns.container_argv([sys.executable, "-S", "-c", _CONTAINER,
                                                    str(d.mnt / "proc/loadavg"), str(logdir), str(stop)]),
                              preexec_fn=lambda: pidns._enter_cgroups(procs), stdin=subprocess.DEVNULL)
        # Two passes of the sampler (5 s each) with both workers answering.
        time.sleep(11)
        status = Path(status_dir_for(str(d.pidfile)))
        first = d.workers()
        wait_for(lambda: all(n > 0 for n in _loadavg_requests(status, first).values()), 10,
                 "both workers answering loadavg reads (published stats)")
        killed = first[0]
        t_kill = time.monotonic()
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: len(d.workers()) == 2 and killed not in d.workers(), 20, "a replacement worker")
        time.sleep(11)  # two more passes, with the replacement serving
        # The replacement can be counted within milliseconds of the kill, so the 11 s above may end just after
        # t_kill + 11: go on until each reader has logged a read of ours past it (a reader that died or hangs
        # fails here, by name).
        for k in range(2):
            wait_for(lambda k=k: _read_after(logdir / f"reader{k}.log", t_kill + 11), 15,
                     f"reader {k} reading the container's loadavg after the replacement's two passes")
        stop.touch()
        ct.wait(30)
    finally:
        stop.touch()
        if ct is not None and ct.poll() is None:
            pidns.kill_namespace(ct)
        d.stop()
        tree.destroy()
    reads = _lines(logdir)
    host_total = int(Path("/proc/loadavg").read_text().split()[3].split("/")[1])
    for rows in reads:
        assert len(rows) > 200, f"too few reads: {len(rows)}"
        # The read in flight on the killed worker may be answered with the host file (the stuck-request rules):
        # recognised by its task count, which is the host's hundreds, not the container's handful.
        ours = [(t, line) for t, line in rows if int(line.split()[3].split("/")[1]) <= 10]
        assert len(rows) - len(ours) <= 2, [line for _t, line in rows if (_t, line) not in ours][:5]
        assert host_total > 10
        seen: list[tuple[str, ...]] = []
        for _t, line in ours:
            fig = tuple(line.split()[:3])
            if not seen or seen[-1] != fig:
                assert fig not in seen, f"figures went back to an earlier pass: {seen[-3:]} then {fig}"
                seen.append(fig)
        l1 = [float(f[0]) for f in seen]
        assert l1 == sorted(l1), f"the 1-minute figure of a busy container went down: {seen}"
        before = [line for t, line in ours if t < t_kill]
        after = [line for t, line in ours if t > t_kill + 11]
        assert before and after
        assert float(before[-1].split()[0]) > 0.0, before[-1]
        assert float(after[-1].split()[0]) > float(before[-1].split()[0]), (before[-1], after[-1])
        assert len(seen) >= 4, seen  # 4 passes: 0.00 at registration, then rising
