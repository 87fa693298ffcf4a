"""Fixtures of the session that runs INSIDE the pure cgroup-v2 QEMU guest (never collected on the host).

Role: build one "container" the way a v2 runtime would, with limits we choose, and read our files through a real
FUSE mount from inside it. Python runs 15-40x slower under emulation, so everything expensive happens once per
session: the cgroup, the swap device, the daemon, and ONE container run that does some CPU work and some direct
I/O and then dumps every virtual file (with the matching cgroup files read just before and just after) into
sections the tests pick apart. The expected values come from the limits set here and from the kernel's own
cgroup files, never from our output.

Guest layout (tools/v2guest/run.py): /dev/vda and /dev/vdb are blank virtio disks (vda takes the container's
I/O; vdb, 128 MiB, becomes swap), 2 vCPUs, 1 GiB RAM, no swap until we enable it, every controller available at
the cgroup2 root.
`PYLXCFS_V2GUEST_DAEMON=lxcfs` serves the same mount with the C lxcfs instead (to compare; the host-side test
never sets it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CGROUP_ROOT = Path("/sys/fs/cgroup")
# cgroup-v2.rst: a controller must be enabled in the parent's cgroup.subtree_control for a child to get its
# interface files (memory.max, cpu.max, cpuset.cpus, io.stat).
CONTROLLERS = ("memory", "cpu", "cpuset", "io")
MEMORY_MAX = 256 * 1024 * 1024  # the container's own memory.max (tighter than its parent's)
SWAP_MAX = 32 * 1024 * 1024  # v2 memory.swap.max counts swap only (v1's memsw counted memory + swap)
PARENT_MEMORY_MAX = 512 * 1024 * 1024  # below the guest's RAM, so it is the limit a looser child gets
PARENT_SWAP_MAX = 64 * 1024 * 1024  # below the 128 MiB swap device
NESTED_MEMORY_MAX = 1024 * 1024 * 1024  # looser than the parent's: the smallest limit up the tree applies
CPU_MAX = (50000, 100000)  # quota, period (us): half a CPU
CPUSET = "0"
CFS_CPUSET = "0-1"  # the guest has 2 vCPUs
IO_DISK = "vda"
SWAP_DISK = "vdb"
# Direct I/O the container performs on IO_DISK (bypassing the page cache, so it reaches the block layer and is
# charged to the container's cgroup in io.stat).
READ_BYTES = 64 * 65536
WRITE_BYTES = 16 * 65536

# Read between the two io.stat reads (proc/stat is read on its own, between the two cpu.stat reads).
VIEW_FILES = {
    "meminfo": "proc/meminfo",
    "cpuinfo": "proc/cpuinfo",
    "swaps": "proc/swaps",
    "diskstats": "proc/diskstats",
    "uptime": "proc/uptime",
    "online": "sys/devices/system/cpu/online",
}


def _write(path: Path, value: str) -> None:
    # One write() per value: cgroup files parse each write as one command.
    with path.open("w") as f:
        f.write(value)


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pylxcfs-test-v2guest-") as path:
        yield Path(path)


@dataclass(frozen=True)
class CgroupTree:
    """parent (limits) with two children: `ct` (the main container, tighter limits of its own) and `nested`
    (looser limits of its own, so the parent's must win), plus `cfs` (cpuset of both CPUs, cpu.max of half a CPU)."""

    parent: Path
    ct: Path
    nested: Path
    cfs: Path  # two CPUs in its cpuset, half a CPU of quota


@pytest.fixture(scope="session")
def cgroups() -> Iterator[CgroupTree]:
    """The test's own cgroup subtree under the cgroup2 root, removed afterwards."""
    have = (CGROUP_ROOT / "cgroup.controllers").read_text().split()
    missing = [c for c in CONTROLLERS if c not in have]
    assert not missing, f"controllers {missing} are not available at the cgroup2 root (have {have})"
    enable = " ".join(f"+{c}" for c in CONTROLLERS)
    _write(CGROUP_ROOT / "cgroup.subtree_control", enable)
    parent = CGROUP_ROOT / f"pylxcfs-test-v2guest-{os.getpid()}"
    tree = CgroupTree(parent, parent / "ct", parent / "nested", parent / "cfs")
    parent.mkdir()
    try:
        _write(parent / "memory.max", str(PARENT_MEMORY_MAX))
        _write(parent / "memory.swap.max", str(PARENT_SWAP_MAX))
        # cgroup-v2.rst "no internal process" rule: the parent only holds the children, never processes.
        _write(parent / "cgroup.subtree_control", enable)
        tree.ct.mkdir()
        _write(tree.ct / "memory.max", str(MEMORY_MAX))
        _write(tree.ct / "memory.swap.max", str(SWAP_MAX))
        _write(tree.ct / "cpuset.cpus", CPUSET)
        _write(tree.ct / "cpu.max", f"{CPU_MAX[0]} {CPU_MAX[1]}")
        tree.nested.mkdir()
        _write(tree.nested / "memory.max", str(NESTED_MEMORY_MAX))
        _write(tree.nested / "memory.swap.max", "max")
        tree.cfs.mkdir()
        _write(tree.cfs / "cpuset.cpus", CFS_CPUSET)
        _write(tree.cfs / "cpu.max", f"{CPU_MAX[0]} {CPU_MAX[1]}")
        yield tree
    finally:
        # cgroup.kill (5.14+) SIGKILLs every member of the subtree; rmdir works once the cgroups are empty.
        _write(parent / "cgroup.kill", "1")
        for cg in (tree.ct, tree.nested, tree.cfs, parent):
            for _ in range(100):
                if not cg.exists() or not (cg / "cgroup.procs").read_text().split():
                    break
                time.sleep(0.1)
            if cg.exists():
                cg.rmdir()


@pytest.fixture(scope="session")
def swap_device() -> Iterator[Path]:
    """The guest boots without swap; memory.swap.* only mean something once a swap device is active."""
    dev = Path("/dev") / SWAP_DISK
    assert dev.is_block_device(), f"{dev} missing: the runner must attach a second disk (--disk-mb twice)"
    subprocess.run(["mkswap", str(dev)], check=True, capture_output=True, timeout=60)
    subprocess.run(["swapon", str(dev)], check=True, capture_output=True, timeout=60)
    try:
        yield dev
    finally:
        subprocess.run(["swapoff", str(dev)], check=False, capture_output=True, timeout=120)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    mnt: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _is_mounted(mnt: Path) -> bool:
    target = str(mnt)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


@contextlib.contextmanager
def _serving(scratch: Path, name: str, options: tuple[str, ...] = ()) -> Iterator[Daemon]:
    """Our daemon (or the C lxcfs, see the module docstring) serving scratch/<name>, stopped with SIGTERM."""
    impl = os.environ.get("PYLXCFS_V2GUEST_DAEMON", "pylxcfs")
    if impl == "pylxcfs":
        exe = str(Path(sys.executable).parent / "pylxcfs")
    elif impl == "lxcfs":
        exe = "lxcfs"
    else:
        pytest.fail(f"PYLXCFS_V2GUEST_DAEMON must be pylxcfs or lxcfs, not {impl!r}")
    mnt = scratch / name
    mnt.mkdir()
    log = scratch / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "--foreground", *options, "--pidfile", str(scratch / f"{name}.pid"), str(mnt)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    d = Daemon(proc, mnt, log)
    try:
        # Generous: a Python start plus imports takes seconds under emulation. Fail fast if the daemon died.
        deadline = time.monotonic() + 120
        while not _is_mounted(mnt):
            if proc.poll() is not None:
                pytest.fail(f"{impl} exited with {proc.returncode} before mounting:\n{d.log_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{impl} did not mount {mnt} within 120 s:\n{d.log_text()}")
            time.sleep(0.1)
        yield d
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if _is_mounted(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False, capture_output=True, timeout=60)
        print(f"--- {impl} {' '.join(options)} log ---\n{d.log_text()}")


@pytest.fixture(scope="session")
def daemon(scratch: Path) -> Iterator[Daemon]:
    """The daemon with default options."""
    with _serving(scratch, "mnt") as d:
        yield d


@pytest.fixture(scope="session")
def cfs_daemon(scratch: Path) -> Iterator[Daemon]:
    """A second daemon with --enable-cfs: CPU count from cpu.max, capped by the cpuset."""
    with _serving(scratch, "mnt-cfs", ("--enable-cfs",)) as d:
        yield d


# The container's script: PID 1 of a new pid namespace (with its own /proc), born inside the limited cgroup.
# It burns some CPU and does direct I/O first, so cpu.stat and io.stat have something to show, then reads the
# cgroup files just before and just after the virtual files that depend on them (cpu.stat around proc/stat,
# io.stat around the rest, which does no block I/O). Each section starts with "@@@ name"; a failed read
# is recorded as "@@@ERROR" so the test that needs it can say so.
SECTION_FUNCTION = 'section() { echo "@@@ $1"; cat "$2" || echo "@@@ERROR cat $2"; }\n'
CONTAINER_SCRIPT = r"""
mnt=$1 cg=$2
i=0
while [ $i -lt 30000 ]; do i=$((i + 1)); done
dd if=/dev/{io_disk} of=/dev/null bs=65536 count={read_blocks} iflag=direct status=none || echo "@@@ERROR dd read"
dd if=/dev/zero of=/dev/{io_disk} bs=65536 count={write_blocks} oflag=direct status=none || echo "@@@ERROR dd write"
{section_function}section pid1_cgroup /proc/1/cgroup
echo "@@@ dev_node"; ls -l /dev/{io_disk}
section cpu.stat.before "$cg/cpu.stat"
section stat "$mnt/proc/stat"
section cpu.stat.after "$cg/cpu.stat"
for r in cpu memory io; do
  section $r.pressure.before "$cg/$r.pressure"
  section pressure_$r "$mnt/proc/pressure/$r"
  section $r.pressure.after "$cg/$r.pressure"
done
section vm.io.stat.before "$cg/io.stat"
section memory.stat.before "$cg/memory.stat"
section vmstat "$mnt/proc/vmstat"
section memory.stat.after "$cg/memory.stat"
section vm.io.stat.after "$cg/io.stat"
section io.stat.before "$cg/io.stat"
{reads}
section io.stat.after "$cg/io.stat"
echo "@@@ end"
"""


@dataclass(frozen=True)
class ContainerRun:
    """What the container saw, by section name, plus the wall time its whole run took."""

    sections: dict[str, str]
    wall_seconds: float
    cgroup: Path

    def __getitem__(self, name: str) -> str:
        assert name in self.sections, f"section {name} missing; the container printed {sorted(self.sections)}"
        return self.sections[name]


def _split_sections(text: str) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@@ERROR"):
            raise AssertionError(f"the container failed: {line}\nfull output:\n{text}")
        if line.startswith("@@@ "):
            current = sections.setdefault(line[4:], [])
        elif current is not None:
            current.append(line)
    return {k: "\n".join(v) + "\n" for k, v in sections.items()}


def _run_container(cg: Path, script: str, *args: Path) -> ContainerRun:
    """Run `script` (sh, with `args` as $1...) as PID 1 of a new pid namespace whose init is born in `cg`."""
    # The launcher joins the cgroup and only then execs unshare, so the namespace's init is born in it.
    launcher = (
        'echo $$ > "$1/cgroup.procs" && script=$2 && shift 2 && '
        'exec unshare --pid --fork --kill-child --mount-proc sh -c "$script" ct "$@"'
    )
    started = time.monotonic()
    proc = subprocess.run(
        ["sh", "-c", launcher, "launch", str(cg), script, *map(str, args)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    wall = time.monotonic() - started
    assert proc.returncode == 0, f"container exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    print(proc.stdout)
    return ContainerRun(_split_sections(proc.stdout), wall, cg)


@pytest.fixture(scope="session")
def container(cgroups: CgroupTree, swap_device: Path, daemon: Daemon) -> ContainerRun:
    """The main container, in parent/ct: every view, after some CPU work and direct I/O."""
    reads = "\n".join(f'section {name} "$mnt/{rel}"' for name, rel in VIEW_FILES.items())
    script = CONTAINER_SCRIPT.format(
        io_disk=IO_DISK, read_blocks=READ_BYTES // 65536, write_blocks=WRITE_BYTES // 65536, reads=reads,
        section_function=SECTION_FUNCTION,
    )
    return _run_container(cgroups.ct, script, daemon.mnt, cgroups.ct)


@pytest.fixture(scope="session")
def nested_container(cgroups: CgroupTree, swap_device: Path, daemon: Daemon) -> ContainerRun:
    """A second container, in parent/nested, whose own limits are looser than the parent's."""
    script = SECTION_FUNCTION + """
section pid1_cgroup /proc/1/cgroup
section meminfo "$1/proc/meminfo"
section swaps "$1/proc/swaps"
"""
    return _run_container(cgroups.nested, script, daemon.mnt)


@pytest.fixture(scope="session")
def cfs_container(cgroups: CgroupTree, daemon: Daemon, cfs_daemon: Daemon) -> ContainerRun:
    """A container in parent/cfs reading the CPU views through both daemons ($1 default, $2 --enable-cfs)."""
    script = SECTION_FUNCTION + """
section pid1_cgroup /proc/1/cgroup
section cpuinfo "$1/proc/cpuinfo"
section online "$1/sys/devices/system/cpu/online"
section stat "$1/proc/stat"
section cfs.cpuinfo "$2/proc/cpuinfo"
section cfs.online "$2/sys/devices/system/cpu/online"
section cfs.stat "$2/proc/stat"
"""
    return _run_container(cgroups.cfs, script, daemon.mnt, cfs_daemon.mnt)
