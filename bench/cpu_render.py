"""CPU-views micro-benchmark (issue 5): per-open cost of Renderer.render() for proc/cpuinfo, proc/stat and
sys/devices/system/cpu/online, with and without --enable-cfs, for a real pid-ns init in v1 cpuset/cpu/cpuacct
cgroups (CFS quota 50000/100000 two levels deep); next to the kernel's own cost of producing the host files
(the floor any implementation pays) and the cpuinfo cache-miss path (a host whose "cpu MHz" changes on
every read).

Run as root:  .venv/bin/python -m bench.cpu_render
Measurement only (best of 7 rounds); nothing asserts a speed. Creates and removes its own cgroups
(pylxcfs-bench-cpu-<pid>) and processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import timeit
from collections.abc import Callable

from pylxcfs.context import ViewOptions
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.parse.cpuinfo import parse_cpuinfo
from pylxcfs.service import Renderer
from pylxcfs.views.cpuinfo import compile_cpuinfo, render_cpuinfo

CG = HostRoot().cgroup
CTRLS = ("cpuset", "cpu", "cpuacct")
PATHS = ("proc/cpuinfo", "proc/stat", "sys/devices/system/cpu/online")


def _best_us(f: Callable[[], object], n: int = 1000) -> float:
    return min(timeit.repeat(f, number=n, repeat=7)) / n * 1e6


def _write(path: str, value: str) -> None:
    with open(path, "w") as fh:
        fh.write(value)


def main() -> None:
    name = f"pylxcfs-bench-cpu-{os.getpid()}"
    made: list[str] = []
    for c in CTRLS:
        for rel in (name, f"{name}/ct"):
            os.mkdir(f"{CG}/{c}/{rel}")
            made.append(f"{CG}/{c}/{rel}")
            if c == "cpuset":
                for f in ("cpuset.mems", "cpuset.cpus"):
                    _write(f"{CG}/cpuset/{rel}/{f}", read_bytes(f"{CG}/cpuset/{f}").decode().strip())
    _write(f"{CG}/cpu/{name}/ct/cpu.cfs_quota_us", "50000")

    def enter() -> None:
        for c in CTRLS:
            _write(f"{CG}/{c}/{name}/ct/cgroup.procs", str(os.getpid()))

    p = subprocess.Popen(["unshare", "-p", "-f", "--kill-child", "sleep", "600"], preexec_fn=enter)
    try:
        init = 0
        for _ in range(500):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{p.pid}/task/{p.pid}/children") as fh:
                kids = fh.read().split()
                if kids:
                    init = int(kids[0])
                    break
            time.sleep(0.01)
        for cfs in (False, True):
            r = Renderer(HostRoot(), ViewOptions(enable_cfs=cfs))
            for path in PATHS:
                r.render(path, init)
                us = _best_us(lambda r=r, path=path: r.render(path, init))
                print(f"Renderer.render {path:32s} enable_cfs={cfs!s:5s} {us:6.1f} us")
            assert not r.fallbacks, r.fallbacks
        for f in ("/proc/cpuinfo", "/proc/stat", "/sys/devices/system/cpu/online"):
            print(f"kernel floor: open+read+close {f:30s} {_best_us(lambda f=f: read_bytes(f)):6.1f} us")
        text = read_bytes("/proc/cpuinfo").decode()
        miss = _best_us(lambda: render_cpuinfo(compile_cpuinfo(parse_cpuinfo(text)), (0,)))
        print(f"cpuinfo cache miss (parse + template + render, 1 CPU shown): {miss:6.1f} us")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        for d in reversed(made):
            for _ in range(200):
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.01)


if __name__ == "__main__":
    main()
