"""Real cgroup v1 trees for tests on a hybrid/legacy host (test support, root only).

Role: create and remove cgroups under ONE test-owned parent (``pylxcfs-test-<area>-<pid>``) in the v1
``memory``, ``cpuset``, ``cpu``, ``cpuacct`` and ``blkio`` hierarchies, set the limits a test asks for, and tear
everything down (kill members, rmdir bottom-up). It never writes anywhere outside that parent.

Facts it relies on (kernel Documentation/admin-guide/cgroup-v1/):
- cpuset.txt: a cpuset with empty ``cpuset.cpus`` or ``cpuset.mems`` refuses tasks (ENOSPC), so every new cpuset
  copies both from its parent before a limit is applied.
- memory.txt: ``memory.memsw.limit_in_bytes`` must stay >= ``memory.limit_in_bytes``; unlimited reads as
  9223372036854771712 (LONG_MAX rounded down to a page). A child's limit may exceed its parent's: the smallest
  limit along the path is what the kernel enforces, and what lxcfs reports.
- On this machine ``cpu`` and ``cpuacct`` are separate mounts (not ``cpu,cpuacct``), so each gets its own directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS: tuple[str, ...] = ("memory", "cpuset", "cpu", "cpuacct", "blkio")
# memory.txt: "unlimited" on 4 KiB-page kernels (2**63 - 1 rounded down to a page).
V1_UNLIMITED = 9223372036854771712


class CgroupSetupError(RuntimeError):
    """A v1 hierarchy is missing or a control file refused a value (carries the path)."""


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise CgroupSetupError(f"cannot write {value!r} to {path}: {exc}") from exc


def _read(path: Path) -> str:
    return path.read_text().strip()


def missing_hierarchies(root: Path = CGROUP_ROOT) -> list[str]:
    """The controllers of CONTROLLERS that are NOT mounted as their own v1 hierarchy under root."""
    return [c for c in CONTROLLERS if not (root / c / "cgroup.procs").is_file()]


@dataclass(frozen=True)
class V1Cgroup:
    """One cgroup, present at the same relative path in every controller of `controllers`."""

    rel: str  # relative to each hierarchy root, no leading slash: "pylxcfs-test-x-1/c1"
    root: Path = CGROUP_ROOT
    controllers: tuple[str, ...] = CONTROLLERS

    def dir(self, controller: str) -> Path:
        """Directory of this cgroup in one hierarchy."""
        return self.root / controller / self.rel

    @property
    def path(self) -> str:
        """The path as /proc/<pid>/cgroup shows it ("/pylxcfs-test-x-1/c1")."""
        return "/" + self.rel

    def procs_files(self) -> list[Path]:
        """The cgroup.procs file of every hierarchy (write a pid to each to move a process in)."""
        return [self.dir(c) / "cgroup.procs" for c in self.controllers]

    def pids(self) -> set[int]:
        """Every pid that is a member in any hierarchy."""
        out: set[int] = set()
        for f in self.procs_files():
            with contextlib.suppress(FileNotFoundError):
                out.update(int(x) for x in f.read_text().split())
        return out

    def read(self, controller: str, name: str) -> str:
        """Raw content of a control file, stripped."""
        return _read(self.dir(controller) / name)

    def set(self, controller: str, name: str, value: str | int) -> None:
        """Write one control file."""
        _write(self.dir(controller) / name, str(value))

    def set_memory_limit(self, limit_bytes: int | None) -> None:
        """memory.limit_in_bytes; None = unlimited (-1)."""
        self.set("memory", "memory.limit_in_bytes", -1 if limit_bytes is None else limit_bytes)

    def set_memsw_limit(self, limit_bytes: int | None) -> None:
        """memory.memsw.limit_in_bytes (RAM+swap, memory.txt 2.4); None = unlimited."""
        self.set("memory", "memory.memsw.limit_in_bytes", -1 if limit_bytes is None else limit_bytes)

    def set_cpus(self, cpus: str) -> None:
        """cpuset.cpus, e.g. "0" or "0-1"."""
        self.set("cpuset", "cpuset.cpus", cpus)

    def set_cfs(self, quota_us: int, period_us: int = 100_000) -> None:
        """cpu.cfs_period_us then cpu.cfs_quota_us (-1 = no quota)."""
        self.set("cpu", "cpu.cfs_period_us", period_us)
        self.set("cpu", "cpu.cfs_quota_us", quota_us)


@dataclass
class CgroupTree:
    """A test-owned parent cgroup in every hierarchy; children are made with `child()`.

    Use as a context manager, or call `create()` and `destroy()` (idempotent) from a fixture.
    """

    area: str
    root: Path = CGROUP_ROOT
    controllers: tuple[str, ...] = CONTROLLERS
    name: str = ""
    _made: list[V1Cgroup] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"pylxcfs-test-{self.area}-{os.getpid()}"

    @property
    def parent(self) -> V1Cgroup:
        """The test-owned parent itself."""
        return V1Cgroup(self.name, self.root, self.controllers)

    def create(self) -> V1Cgroup:
        """Create the parent in every hierarchy (failing loudly when a hierarchy is missing)."""
        missing = missing_hierarchies(self.root)
        missing = [c for c in missing if c in self.controllers]
        if missing:
            raise CgroupSetupError(f"v1 hierarchies not mounted under {self.root}: {missing}")
        self._sweep_stale()
        return self._mkdir(self.name)

    def child(
        self,
        rel: str,
        *,
        memory_limit: int | None = None,
        memsw_limit: int | None = None,
        cpus: str | None = None,
        cfs_quota_us: int | None = None,
        cfs_period_us: int = 100_000,
        extra: Mapping[tuple[str, str], str] | None = None,
    ) -> V1Cgroup:
        """Create <parent>/<rel> (intermediate levels too) and apply the given limits (None = leave default)."""
        parts = [p for p in rel.split("/") if p]
        cg = self.parent
        for i in range(len(parts)):
            cg = self._mkdir(self.name + "/" + "/".join(parts[: i + 1]))
        if memory_limit is not None:
            cg.set_memory_limit(memory_limit)
        if memsw_limit is not None:
            cg.set_memsw_limit(memsw_limit)
        if cpus is not None:
            cg.set_cpus(cpus)
        if cfs_quota_us is not None:
            cg.set_cfs(cfs_quota_us, cfs_period_us)
        for (ctrl, fname), value in (extra or {}).items():
            cg.set(ctrl, fname, value)
        return cg

    def _mkdir(self, rel: str) -> V1Cgroup:
        cg = V1Cgroup(rel, self.root, self.controllers)
        for c in self.controllers:
            d = cg.dir(c)
            d.mkdir(exist_ok=True)
            if c == "cpuset":
                # cpuset.txt 1.8: cpus and mems start empty and the cpuset refuses tasks until both are set.
                for fname in ("cpuset.mems", "cpuset.cpus"):
                    if not _read(d / fname):
                        _write(d / fname, _read(d.parent / fname))
        if cg not in self._made:
            self._made.append(cg)
        return cg

    def destroy(self, timeout_s: float = 5.0) -> None:
        """Kill every member of the tree and rmdir all its cgroups, deepest first (idempotent)."""
        destroy_tree(self.name, self.root, self.controllers, timeout_s)
        self._made.clear()

    def _sweep_stale(self) -> None:
        """Remove leftovers of THIS area from earlier runs whose owning pid is gone (crashed sessions)."""
        prefix = f"pylxcfs-test-{self.area}-"
        for d in (self.root / "memory").glob(prefix + "*"):
            pid_s = d.name[len(prefix) :]
            if pid_s.isdigit() and not Path(f"/proc/{pid_s}").exists():
                destroy_tree(d.name, self.root, self.controllers)

    def __enter__(self) -> CgroupTree:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def _walk_bottom_up(top: Path) -> Iterator[Path]:
    if not top.is_dir():
        return
    for dirpath, _dirnames, _files in os.walk(top, topdown=False):
        yield Path(dirpath)


def destroy_tree(
    name: str, root: Path = CGROUP_ROOT, controllers: tuple[str, ...] = CONTROLLERS, timeout_s: float = 5.0
) -> None:
    """SIGKILL every member of root/<ctrl>/<name>/** and rmdir bottom-up; raise if something stays behind."""
    if "/" in name.strip("/") or not name.startswith("pylxcfs-test-"):
        raise ValueError(f"refusing to destroy a cgroup not owned by the tests: {name!r}")
    tops = [root / c / name for c in controllers]
    deadline = time.monotonic() + timeout_s
    leftovers: list[str] = []
    while True:
        leftovers = []
        for top in tops:
            for d in _walk_bottom_up(top):
                with contextlib.suppress(FileNotFoundError):
                    for pid_s in (d / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid_s), signal.SIGKILL)
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    # EBUSY while killed members are still exiting: retry until the deadline.
                    if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                        raise
                    leftovers.append(str(d))
        if not leftovers or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if leftovers:
        raise CgroupSetupError(f"could not remove test cgroups: {leftovers}")
