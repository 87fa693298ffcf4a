"""Caller pid -> ContainerContext: the init of the caller's pid namespace and that init's cgroup directory
per controller (spec §4.1; LXCFS lookup_initpid_in_store + get_pid_cgroup + prune_init_scope).

How the init is found (LXCFS forks a helper that setns()es and sends SCM_CREDENTIALS; we must never setns in
the daemon, design.md §3.5): the init is the task whose NSpid's last element is 1 and which lives in the
caller's pid namespace. We walk the caller's PPid chain while the parent shares the caller's pid-ns inode;
if the chain leaves the namespace first (a process that entered with setns, e.g. `runc exec`), we scan
/proc. Results are cached per pid-ns inode and validated on every hit by the init's start time (field 22
of /proc/<init>/stat), which pid reuse cannot reproduce.

The namespace is read with readlink (/proc/<pid>/ns/pid -> "pid:[<inode>]"), never by stat, so a host tree
given with --host-root (a test fixture) holds the same answer as symlinks and goes through the same code.

Raises NotInContainer (caller in the daemon's own pid namespace: the host file is served) and
ProcessGone (the pid or its init vanished). Does no rendering.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from pylxcfs.cgroups.layout import CgroupLayout, detect_layout, map_controllers
from pylxcfs.context import CgroupDir, ContainerContext
from pylxcfs.errors import NotInContainer, ProcessGone
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.parse.mountinfo import parse_mountinfo
from pylxcfs.parse.pid import parse_cgroup, parse_stat_starttime, parse_status

log = logging.getLogger(__name__)

# The live host's cgroup mount directory, as mountinfo spells it; fixture trees are rebased from it.
_CANONICAL_CGROUP = HostRoot().cgroup
_MAX_WALK = 4096  # pid nesting bound: a PPid chain longer than this is a loop or a bug


class PidResolver(Protocol):
    """What the Renderer needs; tests may pass a fake."""

    def resolve(self, pid: int) -> ContainerContext: ...


_DIR_KEYS = ("memory", "cpu", "cpuacct", "cpuset", "blkio", "unified")


@dataclass(slots=True)
class _InitEntry:
    init_pid: int
    start_ticks: int
    proc_ctime_ns: int = 0  # ctime of /proc/<init> when validated (LXCFS 5.0's default validation)
    # hash() of the /proc/<init>/cgroup bytes the dirs were mapped from: a move shows as a new hash (a 64-bit
    # SipHash; keeping the bytes cost about 280 B per namespace in every worker, for the same answer).
    cgroup_hash: int = 0
    # memory, cpu, cpuacct, cpuset, blkio, unified (_DIR_KEYS): a tuple, not map_controllers' dict (184 B less)
    dirs: tuple[CgroupDir | None, ...] | None = None
    cgroup_read_at: float = -1e18  # monotonic time of the last /proc/<init>/cgroup read


def _read_pid_file(path: str) -> bytes:
    """Read /proc/<pid>/<file>; a vanished process becomes ProcessGone (psutil's wrap_exceptions idea)."""
    try:
        return read_bytes(path)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcessGone(f"{path}: {e.strerror}") from None


class Resolver:
    """Resolves caller pids against one HostRoot. Thread-safe (one lock around the cache)."""

    def __init__(self, root: HostRoot) -> None:
        self.root = root
        self._layout: CgroupLayout | None = None
        self._cache: dict[int, _InitEntry] = {}
        self._lock = threading.Lock()
        self._own_ns: int | None = None
        self.cgroup_ttl_s = 1.0

    # ---- layout (detected once; mounts of cgroup hierarchies do not change under a running daemon)
    @property
    def layout(self) -> CgroupLayout:
        """The host's cgroup layout, detected from <proc>/self/mountinfo on first use."""
        if self._layout is None:
            self._layout = self._detect()
        return self._layout

    def _rebase(self, mount_point: str) -> str | None:
        if mount_point == _CANONICAL_CGROUP or mount_point.startswith(_CANONICAL_CGROUP + "/"):
            return self.root.cgroup + mount_point[len(_CANONICAL_CGROUP):]
        # A cgroup mount elsewhere (/cgroup/memory, /dev/cpuset): the same absolute path under the root's top
        # (a --host-root tree holds it there; the host's own root is /).
        return mount_point if self.root.top is None else self.root.top + mount_point

    def _unified_controllers(self, d: str) -> frozenset[str] | None:
        try:
            return frozenset(read_bytes(f"{d}/cgroup.controllers").decode().split())
        except OSError:
            return None

    def _detect(self) -> CgroupLayout:
        text = read_bytes(self.root.proc_path("self/mountinfo")).decode("utf-8", "replace")
        lay = detect_layout(parse_mountinfo(text, "self/mountinfo"), self._rebase, self._unified_controllers)
        log.debug("cgroup layout %s: v1 %s, unified %s", lay.layout.value, sorted(lay.v1),
                  lay.unified.mount_dir if lay.unified else None)
        return lay

    # ---- per-open resolution
    def resolve(self, pid: int) -> ContainerContext:
        """The context for a FUSE caller pid (as seen from our pid namespace)."""
        if pid <= 0:
            # fuse_get_context() gives 0 when the caller is not visible in our pid namespace.
            raise NotInContainer(f"pid {pid} not visible in our pid namespace")
        proc = self.root.proc
        entry = self._cached_init(pid)
        dirs = entry.dirs
        now = time.monotonic()
        if dirs is None or now - entry.cgroup_read_at >= self.cgroup_ttl_s:
            # An init may move between cgroups (systemd moves itself into init.scope at boot), so the
            # membership is re-read, at most every cgroup_ttl_s per namespace: each read costs ~7 us.
            raw = _read_pid_file(f"{proc}/{entry.init_pid}/cgroup")
            h = hash(raw)
            if dirs is None or h != entry.cgroup_hash:
                by = map_controllers(self.layout, parse_cgroup(raw.decode(), f"{entry.init_pid}/cgroup"))
                dirs = tuple(by.get(k) for k in _DIR_KEYS)
                entry.cgroup_hash = h
                entry.dirs = dirs
            entry.cgroup_read_at = now
        return ContainerContext(
            caller_pid=pid,
            init_pid=entry.init_pid,
            init_start_ticks=entry.start_ticks,
            memory=dirs[0],
            cpu=dirs[1],
            cpuacct=dirs[2],
            cpuset=dirs[3],
            blkio=dirs[4],
            unified=dirs[5],
        )

    def _ns_of(self, pid: int) -> int:
        # readlink gives "pid:[<inode>]" in ~2.4 us here, half the cost of stat() following the nsfs link.
        try:
            link = os.readlink(f"{self.root.proc}/{pid}/ns/pid")
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessGone(f"pid {pid} is gone") from None
        return int(link[5:-1])

    def _ns_or_none(self, pid: int) -> int | None:
        # Walks and scans skip what they may not inspect (EACCES on a foreign user namespace's init, races).
        try:
            return self._ns_of(pid)
        except (ProcessGone, OSError):
            return None

    @staticmethod
    def _ns_of_path(path: str) -> int:
        return int(os.readlink(path)[5:-1])

    def _proc_ctime_ns(self, pid: int) -> int:
        try:
            return os.stat(f"{self.root.proc}/{pid}").st_ctime_ns
        except (FileNotFoundError, ProcessLookupError):
            raise ProcessGone(f"pid {pid} is gone") from None

    def _start_ticks(self, pid: int) -> int:
        return parse_stat_starttime(_read_pid_file(f"{self.root.proc}/{pid}/stat").decode(), f"{pid}/stat")

    def _cached_init(self, pid: int) -> _InitEntry:
        if self._own_ns is None:
            # Our own namespace, read once (a root without the link fails here, on the first open, not at start).
            self._own_ns = self._ns_of_path(self.root.proc_path("self/ns/pid"))
        ns = self._ns_of(pid)
        if ns == self._own_ns:
            raise NotInContainer(f"pid {pid} shares the daemon's pid namespace")
        with self._lock:
            entry = self._cache.get(ns)
        if entry is not None:
            # Validation: the same /proc/<init> inode (unchanged ctime, 1.7 us) is the same process; if the
            # inode was recreated (dentry evicted, or pid reuse) fall back to comparing the start time,
            # which pid reuse cannot reproduce.
            try:
                ctime = self._proc_ctime_ns(entry.init_pid)
                if ctime == entry.proc_ctime_ns:
                    return entry
                if self._start_ticks(entry.init_pid) == entry.start_ticks:
                    entry.proc_ctime_ns = ctime
                    return entry
            except ProcessGone:
                pass
            log.debug("pid ns %d: cached init %d is gone or reused; resolving again", ns, entry.init_pid)
        init_pid = self._find_init_real(pid, ns)
        ctime = self._proc_ctime_ns(init_pid)
        entry = _InitEntry(init_pid, self._start_ticks(init_pid), ctime)
        with self._lock:
            self._cache[ns] = entry
            if len(self._cache) > 8192:
                self._prune_locked()
        return entry

    def _prune_locked(self) -> None:
        # Bounded cache: drop entries whose init is gone (the namespace died with it).
        for ns, e in list(self._cache.items()):
            if not os.path.exists(f"{self.root.proc}/{e.init_pid}"):
                del self._cache[ns]

    def _status(self, pid: int) -> tuple[int, tuple[int, ...]]:
        st = parse_status(_read_pid_file(f"{self.root.proc}/{pid}/status").decode(), f"{pid}/status")
        return st.ppid, st.nspid

    def _find_init_real(self, pid: int, ns: int) -> int:
        p = pid
        for _ in range(_MAX_WALK):
            ppid, nspid = self._status(p)
            if nspid[-1] == 1:
                return p
            if ppid <= 0:
                break
            if self._ns_or_none(ppid) != ns:
                break  # entered by setns (runc exec): the chain leaves the namespace before its init
            p = ppid
        return self._scan_for_init(ns, pid)

    def _scan_for_init(self, ns: int, pid: int) -> int:
        for name in os.listdir(self.root.proc):
            if not name.isdigit():
                continue
            if self._ns_or_none(int(name)) != ns:
                continue
            try:
                _, nspid = self._status(int(name))
            except ProcessGone:
                continue
            if nspid[-1] == 1:
                return int(name)
        # A pid namespace whose init exited is torn down by the kernel; seeing none means a race.
        raise ProcessGone(f"no init found for the pid namespace of pid {pid}")
