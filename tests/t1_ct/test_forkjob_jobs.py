"""The forked-job runner (forkjob.run_jobs/run_one): results, exceptions, deaths and deadlines, with real processes."""

from __future__ import annotations

import os
import time

from pylxcfs import forkjob


def test_result_error_and_death() -> None:
    rs = forkjob.run_jobs([("ok", lambda: {"pid": os.getpid()}),
                          ("boom", lambda: {"x": 1 // 0}),
                          ("die", lambda: os._exit(7))], parallel=2, timeout_s=10)
    assert rs[0].ok and rs[0].data["pid"] != os.getpid()  # really ran in a child
    assert not rs[1].ok and "ZeroDivisionError" in rs[1].error
    assert not rs[2].ok and "exit 7" in rs[2].error


def test_deadline_kills_and_parallelism_is_bounded() -> None:
    t = time.monotonic()
    rs = forkjob.run_jobs([(f"sleep{i}", lambda: (time.sleep(30), {})[1]) for i in range(3)], parallel=3,
                         timeout_s=0.5)
    assert all(r.timed_out and not r.ok for r in rs)
    assert time.monotonic() - t < 5
    t = time.monotonic()
    rs = forkjob.run_jobs([(f"s{i}", lambda: (time.sleep(0.3), {})[1]) for i in range(4)], parallel=2, timeout_s=5)
    took = time.monotonic() - t
    assert all(r.ok for r in rs) and took >= 0.55  # two waves of two
