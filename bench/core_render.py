"""Render-core micro-benchmark (issue 5): in-process cost of Renderer.render() per open, per view, for a real
caller in a limited v1 cgroup, next to the raw I/O floor of the files meminfo must read; and the loadavg
sampler's CPU cost per 5-s pass over N one-task cgroups (goal: < 2% of one core at N = 1000).

Run as root:  .venv/bin/python -m bench.core_render [--sampler-cgroups 1000]
Measurement only (best of 7 rounds); nothing here asserts a speed. Creates and removes its own cgroups
(pylxcfs-bench-core-<pid>) and processes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import time
import timeit
from collections.abc import Callable

from pylxcfs.context import CgroupDir
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.sampler import sample_once
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.loadavg import LoadavgState, LoadNode

CG = HostRoot().cgroup
MEM_CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "blkio")


def _best_us(f: Callable[[], object], n: int = 2000) -> float:
    return min(timeit.repeat(f, number=n, repeat=7)) / n * 1e6


def _children(pid: int) -> list[int]:
    with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(x) for x in fh.read().split()]
    return []


def bench_render(name: str) -> None:
    """Per-open render time of every view for a pid-ns member in a 256 MiB v1 cgroup."""
    dirs = []
    for c in MEM_CONTROLLERS:
        d = f"{CG}/{c}/{name}"
        os.mkdir(d)
        dirs.append(d)
        if c == "cpuset":
            for f in ("cpuset.mems", "cpuset.cpus"):
                with open(f"{d}/{f}", "w") as fh:
                    fh.write(read_bytes(f"{CG}/cpuset/{f}").decode())
    with open(f"{CG}/memory/{name}/memory.limit_in_bytes", "w") as fh:
        fh.write(str(256 << 20))

    def enter() -> None:
        for d in dirs:
            with open(f"{d}/cgroup.procs", "w") as fh:
                fh.write(str(os.getpid()))

    p = subprocess.Popen(["unshare", "-p", "-f", "--kill-child", "sh", "-c", "sleep 600 & wait"], preexec_fn=enter)
    try:
        member = 0
        for _ in range(500):
            kids = _children(p.pid)
            if kids and _children(kids[0]):
                member = _children(kids[0])[0]
                break
            time.sleep(0.01)
        r = Renderer(HostRoot(), ViewOptions(enable_loadavg=True))
        print(f"Renderer.render() per open, caller pid {member} in {name} (256 MiB), best of 7:")
        for path in r.paths():
            r.render(path, member)
            print(f"  {path:32s} {_best_us(lambda path=path: r.render(path, member)):7.1f} us")
        mem = f"{CG}/memory/{name}"
        floor = _best_us(lambda: (os.readlink(f"/proc/{member}/ns/pid"), os.stat(f"/proc/{member}"),
                                  read_bytes("/proc/meminfo"), read_bytes(f"{mem}/memory.stat"),
                                  read_bytes(f"{mem}/memory.usage_in_bytes")))
        print(f"  I/O floor of proc/meminfo (ns link, /proc/<init> stat, 3 reads): {floor:.1f} us")
        print(f"  fallbacks: {r.fallbacks}")
    finally:
        p.kill()
        p.wait()
        time.sleep(0.2)
        for d in reversed(dirs):
            with contextlib.suppress(OSError):
                os.rmdir(d)


def bench_sampler(name: str, n: int) -> None:
    """CPU time of one sampler pass over n cpu cgroups holding one sleeping task each."""
    base = f"{CG}/cpu/{name}-sampler"
    os.mkdir(base)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(n):
            d = f"{base}/c{i}"
            os.mkdir(d)

            def enter(d: str = d) -> None:
                with open(f"{d}/cgroup.procs", "w") as fh:
                    fh.write(str(os.getpid()))

            procs.append(subprocess.Popen(["sleep", "600"], preexec_fn=enter))
        st = LoadavgState()
        for i in range(n):
            d = f"{base}/c{i}"
            st.nodes[d] = LoadNode(CgroupDir(d, False, f"{CG}/cpu"))
        cpu = []
        for _ in range(5):
            c0 = time.process_time()
            sample_once(HostRoot(), st)
            cpu.append(time.process_time() - c0)
        best = min(cpu)
        print(f"loadavg sampler: {n} cgroups, one pass {best * 1e3:.1f} ms CPU = {best / 5 * 100:.2f}% of one core "
              f"at the 5 s interval")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        time.sleep(0.3)
        for i in range(n):
            with contextlib.suppress(OSError):
                os.rmdir(f"{base}/c{i}")
        with contextlib.suppress(OSError):
            os.rmdir(base)


def main() -> None:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sampler-cgroups", type=int, default=1000)
    a = ap.parse_args()
    name = f"pylxcfs-bench-core-{os.getpid()}"
    bench_render(name)
    if a.sampler_cgroups:
        bench_sampler(name, a.sampler_cgroups)


if __name__ == "__main__":
    main()
