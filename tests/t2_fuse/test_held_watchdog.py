"""Tier 2: the supervisor's second watchdog (fuse/supervisor.py `_check_held`) against a real process and a real
stats page (a memfd, as the supervisor makes one per worker): a worker that holds requests in its fair queue and
finishes none for the request timeout, with nothing in progress, is SIGKILLed (its requests are then resent to
the others); one that keeps finishing, holds nothing, or is inside a request (the first watchdog's case) is not."""

from __future__ import annotations

import mmap
import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.fuse.statspage import PROGRESS, PROGRESS_AT, STATS, STATS_SIZE
from pylxcfs.fuse.supervisor import Supervisor, Worker

LIMIT_NS = 200_000_000


@pytest.fixture
def sup_and_worker(tmp_path: object) -> Iterator[tuple[Supervisor, Worker, subprocess.Popen[bytes]]]:
    sup = Supervisor("/nonexistent-mount-point", DaemonConfig(), workers=2, request_timeout_s=LIMIT_NS / 1e9)
    proc = subprocess.Popen(["sleep", "60"])
    fd = os.memfd_create("pylxcfs-test-stats")
    os.ftruncate(fd, STATS_SIZE)
    page = mmap.mmap(fd, STATS_SIZE)
    os.close(fd)
    w = Worker(proc.pid, True, -1, time.monotonic(), gen=0, stats=page)
    sup.workers[proc.pid] = w
    try:
        yield sup, w, proc
    finally:
        proc.kill()
        proc.wait()
        page.close()


def test_holding_and_finishing_nothing_gets_the_worker_replaced(
        sup_and_worker: tuple[Supervisor, Worker, subprocess.Popen[bytes]]) -> None:
    sup, w, proc = sup_and_worker
    assert w.stats is not None
    PROGRESS.pack_into(w.stats, PROGRESS_AT, 7, 3)  # 4 held
    t0 = time.monotonic_ns()
    sup._check_held(t0, LIMIT_NS)  # first sight: remembered
    sup._check_held(t0 + LIMIT_NS // 2, LIMIT_NS)
    assert proc.poll() is None
    sup._check_held(t0 + LIMIT_NS + 1, LIMIT_NS)
    assert proc.wait(5) == -9
    assert sup.stuck_requests == 1


@pytest.mark.parametrize("case", ["finishing", "holding nothing", "in a request"])
def test_a_worker_that_moves_holds_nothing_or_is_in_a_request_is_left_alone(
        sup_and_worker: tuple[Supervisor, Worker, subprocess.Popen[bytes]], case: str) -> None:
    sup, w, proc = sup_and_worker
    assert w.stats is not None
    t0 = time.monotonic_ns()
    PROGRESS.pack_into(w.stats, PROGRESS_AT, 7, 3 if case != "holding nothing" else 7)
    if case == "in a request":  # busy since t0: the first watchdog's business, with its own deadline
        STATS.pack_into(w.stats, 0, t0, 99, 4242, 15, 3, 0)
    sup._check_held(t0, LIMIT_NS)
    for i in range(1, 4):
        if case == "finishing":
            PROGRESS.pack_into(w.stats, PROGRESS_AT, 7 + i, 3 + i)
        sup._check_held(t0 + i * LIMIT_NS, LIMIT_NS)
    time.sleep(0.1)
    assert proc.poll() is None and sup.stuck_requests == 0
