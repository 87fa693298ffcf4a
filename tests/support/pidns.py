"""Run a command as PID 1 of a fresh pid namespace inside given v1 cgroups (test support, root only).

Role: give tests a "container-like" process without a container engine: the launcher moves itself into the
cgroups (before exec, so the pid namespace's init is born there), then `unshare --pid --fork --mount
--propagation private --mount-proc` makes the command PID 1 of a new pid namespace with its own /proc. Optionally
lxcfs-style files are bind-mounted over /proc/meminfo & co. INSIDE that private mount namespace before the client
is exec'd, which is exactly what lxcfs-hook does for a real container. Host mounts are never touched: every mount
happens after unshare(CLONE_NEWNS) with propagation private (mount_namespaces(7)).

lxcfs resolves a reader to "PID 1 of the reader's pid namespace" and uses THAT process's cgroups
(virtual-files.md §4.1), so putting the init in the cgroup is what makes the views apply.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pylxcfs.views.registry import bind_targets

from .cgv1 import V1Cgroup

# What lxcfs-hook binds into a container (container path), from the registry as the hook's plan has it: the files
# under /proc and the /sys/devices/system/cpu directory view.
BIND_TARGETS: tuple[str, ...] = tuple("/" + path for path, _is_dir in bind_targets())


def lxcfs_binds(mnt: Path, targets: Sequence[str] = BIND_TARGETS, *, required: bool = True) -> dict[str, str]:
    """Map each container path to its file under an lxcfs mount point.

    required=False drops files the mount does not provide (the C lxcfs 5.0 has no proc/partitions);
    required=True raises FileNotFoundError instead, so a missing file of OUR daemon is a test failure.
    """
    out: dict[str, str] = {}
    for t in targets:
        src = mnt / t.lstrip("/")
        if src.exists():
            out[t] = str(src)
        elif required:
            raise FileNotFoundError(f"{src} is not served by the mount at {mnt}")
    return out


def _enter_cgroups(procs_files: list[str]) -> None:
    # Runs in the forked child before exec (preexec_fn): "echo $$ > cgroup.procs" in each hierarchy.
    me = str(os.getpid()).encode()
    for f in procs_files:
        fd = os.open(f, os.O_WRONLY)
        try:
            os.write(fd, me)
        finally:
            os.close(fd)


def container_argv(argv: Sequence[str], binds: Mapping[str, str] | None = None) -> list[str]:
    """The unshare command line that runs argv as PID 1 after applying the bind mounts (target -> source)."""
    script = ["set -e"]
    for target, source in (binds or {}).items():
        script.append(f"mount --bind {shlex.quote(source)} {shlex.quote(target)}")
    script.append('exec "$@"')
    return [
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount",
        "--propagation",
        "private",
        "--mount-proc",
        "--",
        "/bin/sh",
        "-c",
        "\n".join(script),
        "pidns-init",
        *argv,
    ]


def run(
    argv: Sequence[str],
    *,
    cgroups: Sequence[V1Cgroup] = (),
    binds: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run argv as PID 1 of a new pid+mount namespace whose init is a member of `cgroups`; capture text output."""
    procs = [str(p) for cg in cgroups for p in cg.procs_files()]
    full_env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}
    full_env.update(env or {})
    proc = subprocess.run(
        container_argv(argv, binds),
        preexec_fn=(lambda: _enter_cgroups(procs)) if procs else None,  # tests are single-threaded
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"container command failed ({proc.returncode}): {argv}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


# A tiny reader executed as PID 1: optionally dirties N MiB of anonymous memory first (so the cgroup has a usage
# worth comparing), then reads each path to EOF (never trusting st_size) and prints JSON. The same path may be listed
# twice (e.g. to check counters do not go backwards). It reports its own pid so a test can prove it ran as an init.
_READER = r"""
import json, os, sys
ballast = b"x" * (int(sys.argv[1]) << 20)
out = []
for p in sys.argv[2:]:
    with open(p, "rb") as f:
        chunks = []
        while True:
            b = f.read(65536)
            if not b:
                break
            chunks.append(b)
    out.append([p, b"".join(chunks).decode()])
print(json.dumps({"pid": os.getpid(), "reads": out, "ballast": len(ballast)}))
"""


@dataclass(frozen=True)
class Reading:
    """What a PID-1 reader saw, in read order; `[path]` gives the first read of that path."""

    pid: int
    reads: tuple[tuple[str, str], ...]

    def __getitem__(self, path: str | Path) -> str:
        return self.all(path)[0]

    def all(self, path: str | Path) -> list[str]:
        """Every read of one path, in order."""
        hits = [text for p, text in self.reads if p == str(path)]
        if not hits:
            raise KeyError(str(path))
        return hits


def read_files(
    paths: Sequence[str | Path],
    *,
    cgroups: Sequence[V1Cgroup] = (),
    binds: Mapping[str, str] | None = None,
    ballast_mib: int = 0,
    timeout: float = 30.0,
) -> Reading:
    """Read each path from inside a fresh container-like process (PID 1 of a new pid ns in `cgroups`)."""
    proc = run(
        [sys.executable, "-S", "-c", _READER, str(ballast_mib), *[str(p) for p in paths]],
        cgroups=cgroups,
        binds=binds,
        timeout=timeout,
    )
    data = json.loads(proc.stdout)
    return Reading(int(data["pid"]), tuple((str(p), str(t)) for p, t in data["reads"]))


def kill_namespace(unshare: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGKILL the init of the pid namespace an `unshare --pid --fork` started (the kernel then kills every process
    of the namespace), then unshare itself, and reap it. SIGKILL of unshare alone relies on --kill-child's
    parent-death signal; the init is killed directly so that a flood never outlives its test."""
    inits: list[int] = []
    if unshare.poll() is None:
        with contextlib.suppress(OSError), open(f"/proc/{unshare.pid}/task/{unshare.pid}/children") as f:
            inits = [int(x) for x in f.read().split()]
    for pid in inits:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        unshare.kill()
    unshare.wait(timeout)
