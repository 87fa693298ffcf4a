#!/usr/bin/env python3
"""Capture a fixture host tree (design.md §4.1) from THIS machine: a real container-like process (a new pid
namespace whose init sits in limited v1 cgroups this tool creates) plus the host files the views read.

Usage (root, v1 or hybrid host):  .venv/bin/python tools/capture_fixture.py OUTDIR [--id x86_64-hybrid-debian12]

What it does:
1. creates `pylxcfs-capture-<pid>` (1 GiB memory limit) with a child `ct` (512 MiB, memsw 768 MiB where swap
   accounting exists) in the memory, cpu, cpuacct, cpuset and blkio v1 hierarchies, and the same two groups in
   the cgroup2 mount /sys/fs/cgroup/unified when the host has one (its "0::" line, where PSI lives);
2. starts `unshare -p -f sh -c 'sleep 600 & wait'` inside `ct` (the sh is the namespace init; the sleep is a
   second member, used as the reading "caller"), lets it touch some page cache, then
3. copies, reading each file to EOF: the host file of every view of the registry (views/registry.py),
   /proc/self/mountinfo (cgroup, cgroup2, proc, sysfs and the /sys/fs/cgroup tmpfs lines only), /proc/<pid>/
   {status,stat,cgroup,ns/pid} of the init, the caller and this tool (the "host" caller), and every readable file of
   the container cgroup, its parent and each hierarchy root (memory, cpu, cpuacct, cpuset, blkio, unified:
   its {cpu,memory,io}.pressure among them), plus the cgroup2 root's cgroup.controllers;
4. rewrites pids to stable synthetic ones (init 4242, caller 4243, the unshare parent 4200, this tool 100) and
   the cgroup parent's name to `lxc`, then removes its cgroups and processes.
A MANIFEST.toml records kernel, arch, distro, layout, when/how, and the redactions.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pylxcfs.views.registry import VIEW_PATHS

CG = Path("/sys/fs/cgroup")
PROC = Path("/proc")
# The v1 hierarchies, plus the hybrid host's cgroup2 mount (no controllers, but every group's pressure files).
CONTROLLERS = ("memory", "cpu", "cpuacct", "cpuset", "blkio", *(("unified",) if (CG / "unified/cgroup.procs").is_file()
                                                                 else ()))
INIT, CALLER, PARENT, TOOL = 4242, 4243, 4200, 100
# The host files the views read: the host file of every registry row (same path), plus the host's own online list
# (the CPU rows' selection reads it).
HOST_FILES = tuple(sorted({*VIEW_PATHS, "sys/devices/system/cpu/online"}))
KEEP_FSTYPES = {"cgroup", "cgroup2", "proc", "sysfs"}


def _read(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                break
            chunks.append(b)
        return b"".join(chunks)
    except OSError:
        return None  # write-only control files (memory.force_empty, cgroup.event_control) fail on read
    finally:
        os.close(fd)


def _put(out: Path, rel: str, data: bytes) -> None:
    p = out / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def _link(out: Path, rel: str, target: str) -> None:
    """A symlink as procfs shows it (ns/pid -> "pid:[<inode>]"), dangling in the tree."""
    p = out / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.symlink_to(target)


def _map_line_ints(line: str, pidmap: dict[int, int]) -> str:
    key, _, rest = line.partition(":")
    vals = [str(pidmap.get(int(x), int(x))) if x.isdigit() else x for x in rest.split()]
    return f"{key}:\t" + "\t".join(vals)


def rewrite_status(text: str, pidmap: dict[int, int]) -> str:
    """Map pids in the pid-valued status lines."""
    keys = ("Tgid:", "Pid:", "PPid:", "TracerPid:", "NStgid:", "NSpid:", "NSpgid:", "NSsid:", "Ngid:")
    return "".join(
        (_map_line_ints(ln, pidmap) + "\n") if ln.startswith(keys) else ln + "\n" for ln in text.splitlines()
    )


def rewrite_stat(text: str, pidmap: dict[int, int]) -> str:
    """Map pid, ppid, pgrp and session (fields 1, 4, 5, 6) of /proc/<pid>/stat."""
    head, _, tail = text.partition(" (")
    comm, _, rest = tail.rpartition(") ")
    f = rest.split(" ")
    for i in (1, 2, 3):  # ppid, pgrp, session (fields 4-6)
        if f[i].isdigit():
            f[i] = str(pidmap.get(int(f[i]), int(f[i])))
    return f"{pidmap.get(int(head), int(head))} ({comm}) " + " ".join(f)


def _children(pid: int) -> list[int]:
    data = _read(PROC / str(pid) / "task" / str(pid) / "children") or b""
    return [int(x) for x in data.split()]


def capture(out: Path, host_id: str) -> None:
    """Do the capture described in the module docstring."""
    name = f"pylxcfs-capture-{os.getpid()}"
    made: list[Path] = []
    proc: subprocess.Popen[bytes] | None = None
    try:
        for c in CONTROLLERS:
            for rel in (name, f"{name}/ct"):
                d = CG / c / rel
                d.mkdir()
                made.append(d)
                if c == "cpuset":
                    for f in ("cpuset.mems", "cpuset.cpus"):
                        (d / f).write_text((d.parent / f).read_text())
        (CG / "memory" / name / "memory.limit_in_bytes").write_text(str(1 << 30))
        ct_mem = CG / "memory" / name / "ct"
        (ct_mem / "memory.limit_in_bytes").write_text(str(512 << 20))
        if (ct_mem / "memory.memsw.limit_in_bytes").exists():
            (ct_mem / "memory.memsw.limit_in_bytes").write_text(str(768 << 20))
        procs = [str(CG / c / name / "ct" / "cgroup.procs") for c in CONTROLLERS]

        def enter() -> None:
            for f in procs:
                with open(f, "w") as fh:
                    fh.write(str(os.getpid()))

        script = "cat /usr/lib/x86_64-linux-gnu/*.so* /usr/bin/* >/dev/null 2>&1; sleep 600 & wait"
        proc = subprocess.Popen(["unshare", "-p", "-f", "--kill-child", "sh", "-c", script], preexec_fn=enter)
        deadline = time.monotonic() + 10
        init = caller = 0
        while time.monotonic() < deadline:
            kids = _children(proc.pid)
            if kids:
                init = kids[0]
                grand = _children(init)
                if grand and (_read(PROC / str(grand[0]) / "comm") or b"").strip() == b"sleep":
                    caller = grand[0]
                    break
            time.sleep(0.05)
        if not caller:
            raise SystemExit("container did not start")
        pidmap = {init: INIT, caller: CALLER, proc.pid: PARENT, os.getpid(): TOOL}
        if out.exists():
            shutil.rmtree(out)
        for f in HOST_FILES:
            data = _read(Path("/") / f)
            if data is not None:
                _put(out, f, data)
        mi = (_read(PROC / "self" / "mountinfo") or b"").decode()
        kept = [ln for ln in mi.splitlines()
                if ln.partition(" - ")[2].split(" ")[0] in KEEP_FSTYPES
                or (" /sys/fs/cgroup " in ln and " - tmpfs " in ln)]
        _put(out, "proc/self/mountinfo", ("\n".join(kept) + "\n").encode())
        for real, syn in ((init, INIT), (caller, CALLER), (os.getpid(), TOOL)):
            st = (_read(PROC / str(real) / "status") or b"").decode()
            _put(out, f"proc/{syn}/status", rewrite_status(st, pidmap).encode())
            sv = (_read(PROC / str(real) / "stat") or b"").decode()
            _put(out, f"proc/{syn}/stat", rewrite_stat(sv, pidmap).encode())
            cgf = (_read(PROC / str(real) / "cgroup") or b"").decode().replace(f"/{name}", "/lxc")
            _put(out, f"proc/{syn}/cgroup", cgf.encode())
            _link(out, f"proc/{syn}/ns/pid", os.readlink(PROC / str(real) / "ns" / "pid"))
        _link(out, "proc/self/ns/pid", os.readlink(PROC / "self" / "ns" / "pid"))
        for c in CONTROLLERS:
            for rel_real, rel_syn in (("", ""), (name, "lxc"), (f"{name}/ct", "lxc/ct")):
                d = CG / c / rel_real
                for entry in sorted(os.listdir(d)):
                    p = d / entry
                    if not p.is_file():
                        continue
                    data = _read(p)
                    if data is None:
                        continue
                    if entry in ("tasks", "cgroup.procs", "cgroup.threads"):
                        data = b"".join(b"%d\n" % pidmap[int(x)] for x in data.split() if int(x) in pidmap)
                        if rel_real == "":
                            continue  # the root's member list is the whole host
                    _put(out, f"sys/fs/cgroup/{c}/{rel_syn}/{entry}".replace("//", "/"), data)
        uni = _read(CG / "unified" / "cgroup.controllers")
        if uni is not None:
            _put(out, "sys/fs/cgroup/unified/cgroup.controllers", uni)
        distro = "unknown"
        osr = _read(Path("/etc/os-release")) or b""
        m = re.search(rb'^PRETTY_NAME="([^"]*)"', osr, re.M)
        if m:
            distro = m.group(1).decode()
        manifest = f'''# Fixture host captured by tools/capture_fixture.py (see its docstring for the procedure).
id = "{host_id}"
kernel = "{platform.release()}"
arch = "{platform.machine()}"
distro = "{distro}"
layout = "hybrid"  # v1 controllers + empty cgroup2 at /sys/fs/cgroup/unified (from mountinfo)
captured = "{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"
how = "live capture: pid-ns init (sh) in v1 cgroup lxc/ct (memory 512 MiB, memsw 768 MiB; parent lxc 1 GiB)"
container_init_pid = {INIT}
container_caller_pid = {CALLER}
host_caller_pid = {TOOL}
memory_cgroup = "/lxc/ct"
redactions = """pids rewritten (init {INIT}, caller {CALLER}, unshare parent {PARENT}, capture tool {TOOL}); \
cgroup parent renamed to lxc; mountinfo reduced to cgroup/cgroup2/proc/sysfs lines and the /sys/fs/cgroup \
tmpfs; member lists reduced to the synthetic pids"""
'''
        _put(out, "MANIFEST.toml", manifest.encode())
    finally:
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        for d in reversed(made):
            for _ in range(100):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    for pid in (_read(d / "cgroup.procs") or b"").split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
                    time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--id", default="x86_64-hybrid-debian12")
    a = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("capture_fixture: must run as root (creates cgroups and a pid namespace)", file=sys.stderr)
        return 2
    capture(a.outdir, a.id)
    print(f"captured {a.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
