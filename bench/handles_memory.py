"""Daemon memory with many open handles: pylxcfs against the C lxcfs, same run (part of `make bench`).

A container-like holder (PID 1 of a new pid namespace in the benchmark's limited cgroups, so both daemons render
the container's view) opens N handles on one file, optionally reads each once from offset 0 (as a tool that keeps
its file open after reading does), and keeps them open while we take RSS and PSS of every process of each daemon
(bench.run.memory_kib: supervisor, worker and watchdog for pylxcfs). Regimes: cpuinfo opened, cpuinfo opened and
read (identical renders: pylxcfs shares one buffer among them), stat opened and read (every render differs: one
buffer per handle). Results: a table on stdout, bench/out/handles_memory.md and .json. A measurement, not a test.

    .venv/bin/python -m bench.handles_memory [--handles 40000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import OUT, REPO, Daemon, join_prefix, make_cgroups, memory_kib, remove_cgroups, start, stop

# (file, how each handle is read once: "" not read, "whole" one pread of 64 KiB, "part" one pread of 100 bytes)
REGIMES = (("proc/cpuinfo", ""), ("proc/cpuinfo", "whole"), ("proc/cpuinfo", "part"), ("proc/stat", "whole"),
           ("proc/stat", "part"))
_HOW = {"": "opened", "whole": "opened, read whole once", "part": "opened, first 100 bytes read"}

# Opens n handles on argv[1], preads each once at offset 0 (argv[3]: "whole" 64 KiB, "part" 100 bytes), says READY
# with the number of refused reads (pylxcfs's byte cap answers ENOMEM to partial reads past it), holds the handles
# until stdin closes. The soft RLIMIT_NOFILE is raised to the hard one (raising the hard limit needs CAP_SYS_RESOURCE,
# which the machine may not grant: then several holders share the N handles).
_HOLDER = r"""
import os, resource, sys
path, n, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
errors = 0
if how:
    for fd in fds:
        try:
            os.pread(fd, 65536 if how == "whole" else 100, 0)
        except OSError:
            errors += 1
print("READY", errors, flush=True)
sys.stdin.read()
"""


def holders_for(n: int) -> list[int]:
    """How many handles each holder process opens (within the hard RLIMIT_NOFILE, 64 kept for the interpreter)."""
    per = max(1, min(n, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 64))
    return [min(per, n - i) for i in range(0, n, per)]


def hold(dirs: dict[str, Path], path: Path, n: int, how: str) -> tuple[subprocess.Popen[str], int]:
    """Start one holder; returns once it holds its n handles, with how many of its reads were refused."""
    sh = f'{join_prefix(dirs)}; exec unshare --pid --fork --kill-child "$@"'
    p = subprocess.Popen(["sh", "-c", sh, "holder", sys.executable, "-S", "-c", _HOLDER, str(path), str(n), how],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    word, _, errors = p.stdout.readline().partition(" ")
    if word != "READY":
        p.kill()
        raise SystemExit(f"holder on {path} failed (exit {p.wait()})")
    return p, int(errors)


def release(p: subprocess.Popen[str]) -> None:
    """Close the holder's handles (it exits) and give the daemon a moment to answer the RELEASEs."""
    assert p.stdin is not None
    p.stdin.close()
    p.wait(60)
    time.sleep(1.0)


def measure(daemons: list[Daemon], dirs: dict[str, Path], n: int) -> dict[str, dict[str, object]]:
    """For each daemon: memory at rest, then with n handles held in each regime, and after they are closed."""
    out: dict[str, dict[str, object]] = {}
    for d in daemons:
        row: dict[str, object] = {"rest": memory_kib(d)}
        for fname, how in REGIMES:
            key = f"{fname} {how}".strip()
            t0 = time.monotonic()
            held = [hold(dirs, d.mnt / fname, k, how) for k in holders_for(n)]
            took = time.monotonic() - t0
            time.sleep(0.5)
            m = {**memory_kib(d), "seconds_to_hold": round(took, 2), "holders": len(held),
                 "refused_reads": sum(e for _, e in held)}
            row[key] = m
            for p, _ in held:
                release(p)
            row[f"after {key}"] = memory_kib(d)
            print(f"  {d.name} {key}: {m['pss_all']} KiB PSS ({took:.1f} s to open)", file=sys.stderr)
        out[d.name] = row
    return out


def fmt(res: dict[str, dict[str, object]], n: int) -> str:
    """A markdown table: PSS and RSS of all processes, and the increase over rest, per regime."""
    lines = [f"### Memory with {n} open handles (all processes of each daemon; KiB)", "",
             "| daemon | file: handles | PSS | RSS | PSS added | RSS added | PSS after close | refused reads |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, row in res.items():
        rest = row["rest"]
        assert isinstance(rest, dict)
        lines.append(f"| {name} | at rest | {rest['pss_all']} | {rest['rss_all']} | | | | |")
        for fname, how in REGIMES:
            key = f"{fname} {how}".strip()
            m, after = row[key], row[f"after {key}"]
            assert isinstance(m, dict) and isinstance(after, dict)
            lines.append(f"| {name} | {fname.replace('proc/', '')}: {_HOW[how]} "
                         f"| {m['pss_all']} | {m['rss_all']} | {int(m['pss_all']) - int(rest['pss_all'])} "
                         f"| {int(m['rss_all']) - int(rest['rss_all'])} | {after['pss_all']} | {m['refused_reads']} |")
    lines.append("\nThe holders are PIDs 1 of pid namespaces in one 1 GiB / cpuset 0 cgroup set; \"after close\" = "
                 "all handles closed, 1 s later (freed memory may stay in the allocator); refused reads: ENOMEM from "
                 "pylxcfs's cap on kept partial renders (docs/design-fuse.md).")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--handles", type=int, default=40000)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("needs root (cgroups, FUSE mounts, pid namespaces)")
    lxcfs_bin = shutil.which("lxcfs")
    if not lxcfs_bin:
        raise SystemExit("the C lxcfs is not installed (Debian package lxcfs)")
    OUT.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="pylxcfs-bench-handles-"))
    dirs = make_cgroups(f"pylxcfs-bench-handles-{os.getpid()}")
    daemons: list[Daemon] = []
    try:
        daemons.append(start("lxcfs", [lxcfs_bin, "-f", "-p", str(tmp / "lxcfs.pid"), str(tmp / "c")], tmp / "c"))
        daemons.append(start("pylxcfs", [str(REPO / ".venv/bin/pylxcfs"), "-f", "-p", str(tmp / "py.pid"),
                                         str(tmp / "py")], tmp / "py"))
        time.sleep(0.5)
        res = measure(daemons, dirs, args.handles)
    finally:
        for d in daemons:
            stop(d)
        remove_cgroups(dirs)
        shutil.rmtree(tmp, ignore_errors=True)
    text = fmt(res, args.handles)
    (OUT / "handles_memory.json").write_text(json.dumps({"handles": args.handles, "results": res}, indent=2))
    (OUT / "handles_memory.md").write_text(text + "\n")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
