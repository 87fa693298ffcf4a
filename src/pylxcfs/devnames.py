"""Which block devices a container can see, and under which names (gather layer for diskstats/partitions).

The product rule (seed): diskstats shows only the container's disks, each named as it is under the container's
/dev; the device holding the container's root filesystem is shown as `sda`; a device with no name in the
container is left out.

Tenant safety (docs/disks.md): the daemon serves every container from a few worker processes, so a lookup that
blocks stalls everyone. A tenant decides what its root and /dev are (in a user namespace it may mount FUSE,
tmpfs, overlay, bind mounts of anything it can see, or chroot into our own mount), so nothing here walks a path
the tenant controls in a way that can reach a filesystem's server:
  - Everything about mounts comes from the init's /proc/<pid>/mountinfo TEXT (reading it asks no filesystem),
    capped at MOUNTINFO_CAP_BYTES (a tenant may hold 100,000 mounts).
  - The root device is the major:minor of the topmost mount at "/" in that text. For an overlay (an anonymous
    0:N device) it is the device of the mount holding its upper layer, found in the DAEMON's own mountinfo:
    the overlay with the same 0:N there was mounted by a container engine in the host's mount namespace (a
    tenant cannot mount into it), and its upperdir= string is matched against the host's mount points as text
    (parse.mountinfo.containing_mount). A tenant's own overlay is not there: no root device. No upperdir string
    is ever resolved, so it is no oracle for host paths. A root that is not a mount ("/" missing from the text:
    a plain chroot into a directory) has no root device and no scanned /dev.
  - /dev is scanned only when the text shows a tmpfs or devtmpfs mounted at /dev (what runc, crun, LXC, Docker,
    Podman and Kubernetes all do) over a root on a local or FUSE filesystem (never NFS & co, whose dentries
    revalidate with the server even on the jump through /proc/<pid>/root). /proc/<pid>/root is opened O_PATH
    (the kernel jumps to the init's root; no lookup in it), `dev` is opened from it with openat2(RESOLVE_CACHED)
    (only from the dentry cache: EAGAIN where a lookup would ask the filesystem, e.g. a FUSE root) and
    statx(AT_STATX_DONT_SYNC) must report the mount id the text listed for /dev. Entries are opened O_PATH with
    openat2(RESOLVE_CACHED) and stat'ed only when statx says they are on that /dev mount or on a tmpfs/devtmpfs
    mount the text shows at /dev/<name> (a host node bound there, as rootless engines do): anything else
    mounted over a node (a FUSE file bound onto /dev/sdz) is never asked. Only top-level entries count
    (/dev/mapper and friends hold udev symlinks to them).
  - Cost is bounded: at most MAX_DEV_ENTRIES entries are examined and MAX_NODES block nodes kept per container,
    and a cached answer is reused while the /dev directory's (mount id, inode, mtime, ctime) is unchanged
    (tmpfs updates mtime/ctime on every create, unlink and rename in it), so a big /dev is scanned once per
    change, not once per read. The cache is per container (proc root, init pid, init start time), re-checked
    at most every CACHE_TTL_S and holds CACHE_MAX containers.
  - Host trees (HostRoot.block_nodes_as_files) cannot hold device nodes in git, so there a REGULAR FILE
    dev/<name> containing "block MAJ:MIN" stands for a block node; the mountinfo rules are the same. The host's
    own root never honours those files (a tenant can write its /dev).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pylxcfs import forkjob, syscalls
from pylxcfs.errors import ParseError, ProcessGone
from pylxcfs.hostfs import HostRoot, read_bytes, read_text
from pylxcfs.parse.diskstats import DevT
from pylxcfs.parse.mountinfo import Mount, containing_mount, overlay_layer_dirs, parse_mountinfo, top_mount_at
from pylxcfs.parse.pid import parse_stat_starttime

log = logging.getLogger(__name__)

CACHE_TTL_S = 1.0
CACHE_MAX = 4096  # containers; an entry is a few hundred bytes
MOUNTINFO_CAP_BYTES = 1 << 20  # ~8,000 mounts; an engine-made container has tens
HOST_MOUNTINFO_CAP_BYTES = 16 << 20
HOST_MOUNTS_TTL_S = 1.0
MAX_DEV_ENTRIES = 4096  # /dev entries examined per scan (a privileged container's /dev has a few hundred)
MAX_NODES = 256  # block nodes kept per container
FIXTURE_NODE_PREFIX = "block "
DEV_FSTYPES = frozenset({"tmpfs", "devtmpfs"})
# Roots we may jump to through /proc/<pid>/root: no d_weak_revalidate (NFS and 9p have one, which can ask the
# server on that jump), no server (FUSE is fine: the jump and RESOLVE_CACHED lookups never send it a request).
LOCAL_ROOT_FSTYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "tmpfs", "ramfs", "overlay",
                                "squashfs", "erofs", "f2fs", "bcachefs", "devtmpfs", "aufs", "vfat", "jfs",
                                "reiserfs", "nilfs2"})
# Filesystems an engine's overlay layers may sit on for the daemon itself to jump to the root and look `dev` up
# from the dentry cache: no d_revalidate or d_weak_revalidate (an overlay on anything else is walked in a child).
LOCAL_LAYER_FSTYPES = LOCAL_ROOT_FSTYPES - {"overlay", "aufs"}
_RESOLVE = syscalls.RESOLVE_CACHED | syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH
_RESOLVE_WALK = syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH
WALK_TIMEOUT_S = 1.5  # a lookup of `dev` in an engine's overlay root, in a child (see DevPlan.walk_ok)
WALK_RETRY_S = 10.0  # after a failed walk, the next try for that container
MAX_HELD_FDS = 512  # O_PATH fds on containers' /dev kept from walks (each pins that /dev mount while kept)
PRUNE_S = 30.0  # how often kept fds of containers whose init is gone are closed


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    """Block devices visible in one container.

    nodes: device -> the name of its node in the container's top-level /dev (alphabetically first name
    when several nodes point at one device). root_dev: the device holding the container's root
    filesystem, None when it is not a block device or not known. root_disk: the whole disk of root_dev
    (root_dev itself when it is not a partition or sysfs does not say).
    """

    nodes: dict[DevT, str]
    root_dev: DevT | None
    root_disk: DevT | None
    partitions: frozenset[DevT] = frozenset()  # the devices of `nodes` that sysfs says are partitions


@dataclass(frozen=True, slots=True)
class DevPlan:
    """What the mountinfo text allows: the root device, and the /dev mount to scan (None: do not scan)."""

    root_dev: DevT | None
    dev_mount: Mount | None
    why_not: str = ""  # why /dev is not scanned (for the debug log)
    node_mounts: dict[str, int] = field(default_factory=dict)  # name -> id of a tmpfs/devtmpfs mount on /dev/<name>
    # The root is an overlay a container engine mounted in the host's namespace: its layers are the host's
    # choice, not the tenant's, so `dev` may be looked up in it normally, in a forked child with a deadline, when
    # the dentry cache alone cannot answer (layers whose dentries revalidate: 9p, NFS, a FUSE snapshotter).
    walk_ok: bool = False
    # ... and a layer is not on a filesystem known to be local: even the jump to the root through
    # /proc/<pid>/root may ask a server (d_weak_revalidate of NFS and 9p), so everything up to the O_PATH fd on
    # `dev` happens in the child.
    child_first: bool = False


def _parse_devt(text: str) -> DevT | None:
    major, sep, minor = text.strip().partition(":")
    if sep and major.isdigit() and minor.isdigit():
        return (int(major), int(minor))
    return None


def overlay_upper_device(overlay: Mount, host_mounts: Sequence[Mount]) -> DevT | None:
    """The block device holding an overlay's upper layer, from the daemon's own mount table: the overlay with
    the same anonymous device there (an engine mounted it in the host's namespace), the host mount holding its
    upperdir= path (as text). None when the overlay is not in the host's table or its upper is not on a disk."""
    for m in host_mounts:
        if m.dev != overlay.dev or m.fstype != "overlay":
            continue
        upper = m.super_option("upperdir")
        holder = containing_mount(host_mounts, upper) if upper else None
        dev = holder.devt if holder is not None else None
        return dev if dev is not None and dev[0] != 0 else None
    return None


def _engine_overlay(root: Mount, host: Sequence[Mount]) -> Mount | None:
    """The overlay in the daemon's own table with the same superblock as the container's root, or None."""
    return next((m for m in host if m.dev == root.dev and m.fstype == "overlay"), None)


def layers_are_local(overlay: Mount, host: Sequence[Mount]) -> bool:
    """Every layer directory of a host-side overlay sits (judged from the text) on a local filesystem without
    dentry revalidation; False when one is on anything else or a layer cannot be placed."""
    dirs = overlay_layer_dirs(overlay)
    if not dirs:
        return False
    for d in dirs:
        holder = containing_mount(host, d)
        if holder is None or holder.fstype not in LOCAL_LAYER_FSTYPES:
            return False
    return True


def plan_devices(mounts: Sequence[Mount], host_mounts: Callable[[], Sequence[Mount]]) -> DevPlan:
    """Pure: the root device and the /dev mount to scan, from the init's mounts (`host_mounts` is called only
    for an overlay root)."""
    root = top_mount_at(mounts, "/")
    if root is None:
        return DevPlan(None, None, "the root is not a mount (plain chroot)")
    dev = root.devt
    root_dev: DevT | None = dev if dev is not None and dev[0] != 0 else None
    trusted_root = root.fstype in LOCAL_ROOT_FSTYPES or root.is_fuse
    engine = None
    if root.fstype == "overlay":
        host = host_mounts()
        root_dev = overlay_upper_device(root, host)
        # An overlay the engine did not mount in the host's namespace is the tenant's own: its layers may be
        # anything it can see (an NFS bind, our own mount), so its root is not jumped to.
        engine = _engine_overlay(root, host)
        trusted_root = engine is not None
    devm = top_mount_at(mounts, "/dev")
    if not trusted_root:
        return DevPlan(root_dev, None, f"root filesystem {root.fstype} is not known to be local")
    if devm is None or devm.fstype not in DEV_FSTYPES:
        return DevPlan(root_dev, None, "/dev is not a tmpfs mount" if devm is None else f"/dev is {devm.fstype}")
    node_mounts = {m.mount_point[5:]: m.mount_id for m in mounts
                   if m.fstype in DEV_FSTYPES and m.mount_point.startswith("/dev/")
                   and "/" not in m.mount_point[5:] and top_mount_at(mounts, m.mount_point) is m}
    return DevPlan(root_dev, devm, node_mounts=node_mounts, walk_ok=engine is not None,
                   child_first=engine is not None and not layers_are_local(engine, host))


def _printable_name(name: str) -> bool:
    """True for names that fit a whitespace-separated /proc line (what the kernel's device names are)."""
    return name.isprintable() and not any(c.isspace() for c in name)


def _add(nodes: dict[DevT, str], dev: DevT, name: str) -> None:
    prev = nodes.get(dev)
    if prev is None:
        if len(nodes) < MAX_NODES:
            nodes[dev] = name
    elif name < prev:
        nodes[dev] = name


Fingerprint = tuple[int, int, int, int]  # /dev's (mount id, inode, mtime ns, ctime ns)


@dataclass(slots=True)
class ScanStats:
    """Counters of the work done (for tests and logs): full scans and /dev entries examined."""

    scans: int = 0
    entries: int = 0
    truncated: int = 0
    walks: int = 0  # lookups of a container's `dev` done in a forked child (see DevPlan.walk_ok)


def _open_dev_path(root: HostRoot, pid: int, plan: DevPlan) -> tuple[int | None, bool]:
    """(an O_PATH fd on the container's `dev` (no filesystem's open is called on it) or None if it cannot be had
    safely, whether a child walked to it). From the dentry cache only, unless plan.walk_ok: then by a normal lookup
    in a forked child killed after WALK_TIMEOUT_S (when the cache cannot answer, or from the start when
    plan.child_first)."""
    proc_root = root.proc_path(f"{pid}/root")
    flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    if not plan.child_first:
        try:
            rootfd = os.open(proc_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except (FileNotFoundError, ProcessLookupError) as e:
            raise ProcessGone(f"pid {pid}: {e.strerror}") from None
        except OSError as e:
            log.debug("pid %d: root not usable: %s", pid, e)
            return None, False
        try:
            return syscalls.openat2(rootfd, "dev", flags, _RESOLVE), False
        except OSError as e:
            # EAGAIN: `dev` is not in the dentry cache or its dentry needs revalidation (a FUSE root whose entry
            # timed out, an overlay over 9p or NFS): the cache alone cannot answer.
            if e.errno != errno.EAGAIN or not plan.walk_ok:
                log.debug("pid %d: container /dev not reachable from the cache: %s", pid, e)
                return None, False
        finally:
            os.close(rootfd)

    def walk() -> int:
        rfd = os.open(proc_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return syscalls.openat2(rfd, "dev", flags, _RESOLVE_WALK)

    res = forkjob.fd_from_child(walk, WALK_TIMEOUT_S)
    if res.fd is None:
        if res.errno in (errno.ENOENT, errno.ESRCH) and not os.path.exists(root.proc_path(str(pid))):
            raise ProcessGone(f"pid {pid}: gone")
        log.info("pid %d: looking up /dev in the container's overlay root %s", pid,
                 f"took more than {WALK_TIMEOUT_S} s" if res.timed_out else f"failed: {os.strerror(res.errno)}")
    return res.fd, res.fd is not None


def _open_dev(root: HostRoot, pid: int, plan: DevPlan, stats: ScanStats,
              held: int | None = None) -> tuple[int | None, int | None]:
    """(a directory fd on the container's /dev, an O_PATH fd to keep for next time or None). The /dev found must
    be the mount plan.dev_mount (statx mount id: a tenant may stack a mount on /dev after we read mountinfo), and
    only then is it opened for reading (a FUSE directory would be sent OPENDIR). `held`: an O_PATH fd on /dev kept
    from an earlier walk in a child (reused while it is still that mount; closed otherwise)."""
    assert plan.dev_mount is not None
    want = plan.dev_mount.mount_id
    keep = False
    pfd = held
    if pfd is not None:
        with contextlib.suppress(OSError):
            keep = syscalls.statx_mnt_id(pfd) == want
        if not keep:
            os.close(pfd)
            pfd = None
    if pfd is None:
        pfd, keep = _open_dev_path(root, pid, plan)
        if pfd is None:
            return None, None
        stats.walks += keep
    try:
        if syscalls.statx_mnt_id(pfd) != want:
            log.debug("pid %d: /dev is not mount %d (changed since mountinfo was read)", pid, want)
            os.close(pfd)
            return None, None
        # "." of a verified tmpfs directory: no lookup, and the open is tmpfs's.
        devfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pfd)
    except OSError as e:
        log.debug("pid %d: opening /dev: %s", pid, e)
        os.close(pfd)
        return None, None
    if keep:
        return devfd, pfd  # kept: the next check needs no walk (and no child)
    os.close(pfd)
    return devfd, None


def _scan_real(devfd: int, devm: Mount, node_mounts: dict[str, int], stats: ScanStats) -> dict[DevT, str]:
    """Block nodes among /dev's top-level entries. `node_mounts`: name -> id of the tmpfs/devtmpfs mount the text
    shows on /dev/<name> (rootless engines bind the host's nodes over placeholder files there); an entry on any
    other mount is not looked at."""
    nodes: dict[DevT, str] = {}
    stats.scans += 1
    n = 0
    with os.scandir(devfd) as it:
        for entry in it:
            n += 1
            if n > MAX_DEV_ENTRIES:
                stats.truncated += 1
                log.info("container /dev has more than %d entries; the rest are not examined", MAX_DEV_ENTRIES)
                break
            # d_type from getdents (tmpfs always fills it): no stat for directories, symlinks, regular files,
            # except a placeholder with a node mounted over it (d_type is the placeholder's).
            bound = node_mounts.get(entry.name)
            if bound is None and (entry.is_dir(follow_symlinks=False) or entry.is_symlink()
                                  or entry.is_file(follow_symlinks=False)):
                continue
            if not _printable_name(entry.name):
                continue  # a name with whitespace or control characters would break the line format
            try:
                # From the dentry cache only; a mount on the entry is entered without asking its filesystem.
                fd = syscalls.openat2(devfd, entry.name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, _RESOLVE)
            except OSError:
                continue  # removed meanwhile, or not in the dentry cache
            try:
                mnt = syscalls.statx_mnt_id(fd)
                if mnt != (devm.mount_id if bound is None else bound):
                    continue  # something else is mounted on it (a FUSE file bound over the node): never stat'ed
                st = os.fstat(fd)  # an inode of a tmpfs/devtmpfs: answered from memory
            except OSError:
                continue
            finally:
                os.close(fd)
            if stat.S_ISBLK(st.st_mode):
                _add(nodes, (os.major(st.st_rdev), os.minor(st.st_rdev)), entry.name)
    stats.entries += min(n, MAX_DEV_ENTRIES)
    return nodes


def _scan_node_files(root: HostRoot, pid: int, stats: ScanStats) -> dict[DevT, str]:
    """Host trees (HostRoot.block_nodes_as_files): `dev/<name>` regular files reading "block MAJ:MIN" stand for
    block nodes."""
    nodes: dict[DevT, str] = {}
    stats.scans += 1
    try:
        it = os.scandir(root.proc_path(f"{pid}/root/dev"))
    except OSError:
        return nodes
    with it:
        for entry in it:
            if not entry.is_file(follow_symlinks=False) or not _printable_name(entry.name):
                continue
            text = read_bytes(entry.path, 64).decode("ascii", "replace")
            if text.startswith(FIXTURE_NODE_PREFIX):
                dev = _parse_devt(text[len(FIXTURE_NODE_PREFIX):])
                if dev is not None:
                    _add(nodes, dev, entry.name)
    return nodes


def is_partition(root: HostRoot, dev: DevT) -> bool:
    """sysfs: /sys/dev/block/M:m/partition exists for partitions only."""
    return os.path.exists(root.sys_path(f"dev/block/{dev[0]}:{dev[1]}/partition"))


def whole_disk(root: HostRoot, dev: DevT) -> DevT:
    """The disk a partition belongs to (sysfs: /sys/dev/block/M:m/partition exists, ../dev names the
    disk); `dev` itself for whole disks or when sysfs does not say."""
    base = root.sys_path(f"dev/block/{dev[0]}:{dev[1]}")
    if not os.path.exists(f"{base}/partition"):
        return dev
    try:
        parent = _parse_devt(read_text(f"{base}/../dev"))
    except OSError:
        return dev
    return parent if parent is not None else dev


def read_mounts(path: str, cap: int) -> list[Mount] | None:
    """Parsed mountinfo at `path`; None when it is larger than `cap` bytes or malformed. ProcessGone if the
    process is gone."""
    try:
        data = read_bytes(path, cap)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcessGone(f"{path}: {e.strerror}") from None
    if len(data) >= cap:
        log.info("%s is larger than %d bytes: not inspected", path, cap)
        return None
    try:
        return parse_mountinfo(data.decode("utf-8", "surrogateescape"), path)
    except ParseError as e:
        log.info("%s: %s", path, e)
        return None


@dataclass(slots=True)
class _Entry:
    checked: float  # monotonic time of the last check
    fp: Fingerprint | None
    devs: ContainerDevices
    held_fd: int | None = None  # O_PATH fd on the container's /dev from a walk in a child (see _open_dev)
    retry_after: float = 0.0  # no walk in a child before this time (the last one failed)


class DeviceNameCache:
    """The container devices per (proc root, init pid, init start time), re-checked at most every ttl_s: the
    init's mountinfo is re-read (cheap) and /dev rescanned only when its fingerprint changed. Bounded LRU; an
    entry may keep an O_PATH fd on its /dev (at most MAX_HELD_FDS, closed on eviction and when the init is gone)."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, max_entries: int = CACHE_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.stats = ScanStats()
        self._clock = clock
        self._d: OrderedDict[tuple[str, int, int], _Entry] = OrderedDict()
        self._host: tuple[float, str, list[Mount]] | None = None
        self._held: OrderedDict[tuple[str, int, int], None] = OrderedDict()  # keys whose entry holds an fd
        self._pruned = clock()

    def __len__(self) -> int:
        return len(self._d)

    @property
    def held_fds(self) -> int:
        """How many /dev fds entries keep."""
        return len(self._held)

    def _host_mounts(self, root: HostRoot) -> list[Mount]:
        now = self._clock()
        if self._host is None or self._host[1] != root.proc or now - self._host[0] >= HOST_MOUNTS_TTL_S:
            try:
                mounts = read_mounts(root.proc_path("self/mountinfo"), HOST_MOUNTINFO_CAP_BYTES) or []
            except ProcessGone:
                mounts = []
            self._host = (now, root.proc, mounts)
        return self._host[2]

    def _release(self, key: tuple[str, int, int], e: _Entry) -> None:
        if e.held_fd is not None:
            os.close(e.held_fd)
            e.held_fd = None
        self._held.pop(key, None)

    def _drop(self, key: tuple[str, int, int]) -> None:
        e = self._d.pop(key, None)
        if e is not None:
            self._release(key, e)

    def _prune(self, now: float) -> None:
        """Close the fds kept for containers whose init is gone (their /dev mounts are otherwise pinned)."""
        self._pruned = now
        for key in list(self._held):
            proc, pid, start = key
            try:
                alive = parse_stat_starttime(read_bytes(f"{proc}/{pid}/stat").decode()) == start
            except (OSError, ParseError, UnicodeDecodeError):
                alive = False
            if not alive:
                self._drop(key)

    def get(self, root: HostRoot, pid: int, start_ticks: int) -> ContainerDevices:
        """The container's devices (cached; see the class docstring)."""
        key = (root.proc, pid, start_ticks)
        now = self._clock()
        if self._held and now - self._pruned >= PRUNE_S:
            self._prune(now)
        hit = self._d.get(key)
        if hit is not None and now - hit.checked < self.ttl_s:
            self._d.move_to_end(key)
            return hit.devs
        try:
            e = self._gather(root, pid, hit, now)
        except BaseException:
            self._drop(key)
            raise
        if hit is not None and hit.held_fd is not None and hit.held_fd != e.held_fd:
            self._release(key, hit)  # _gather closed or replaced it
        self._d[key] = e
        self._d.move_to_end(key)
        if e.held_fd is not None:
            self._held[key] = None
            self._held.move_to_end(key)
        else:
            self._held.pop(key, None)
        while len(self._held) > MAX_HELD_FDS:
            old = next(iter(self._held))
            oe = self._d.get(old)
            if oe is not None:
                self._release(old, oe)
            else:
                self._held.pop(old)
        while len(self._d) > self.max_entries:
            self._drop(next(iter(self._d)))
        return e.devs

    def _gather(self, root: HostRoot, pid: int, prev: _Entry | None, now: float) -> _Entry:
        held = prev.held_fd if prev is not None else None
        if prev is not None:
            prev.held_fd = None  # ownership moves to this call (kept, replaced or closed below)
        try:
            mounts = read_mounts(root.proc_path(f"{pid}/mountinfo"), MOUNTINFO_CAP_BYTES)
        except BaseException:
            if held is not None:
                os.close(held)
            raise
        if mounts is None:
            if held is not None:
                os.close(held)
            return _Entry(now, None, ContainerDevices({}, None, None))
        plan = plan_devices(mounts, lambda: self._host_mounts(root))
        fp: Fingerprint | None = None
        nodes: dict[DevT, str] = {}
        retry_after = prev.retry_after if prev is not None else 0.0
        devm = plan.dev_mount
        if devm is None:
            log.debug("pid %d: container /dev not scanned: %s", pid, plan.why_not)
        elif root.block_nodes_as_files:
            nodes = _scan_node_files(root, pid, self.stats)
        else:
            devfd: int | None = None
            if held is None and plan.walk_ok and now < retry_after:
                # The last walk failed (a layer's server did not answer): until retry_after, the dentry cache
                # alone, and nothing at all where even the jump to the root is the child's to do.
                if not plan.child_first:
                    devfd, held = _open_dev(root, pid, DevPlan(plan.root_dev, devm, plan.why_not,
                                                               plan.node_mounts), self.stats)
            else:
                devfd, held = _open_dev(root, pid, plan, self.stats, held)
                if devfd is None and plan.walk_ok:
                    retry_after = now + WALK_RETRY_S
            if devfd is not None:
                try:
                    st = os.fstat(devfd)
                    fp = (devm.mount_id, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
                    # Unchanged /dev (same mount, inode, mtime, ctime): the last scan still holds.
                    if prev is not None and prev.fp == fp:
                        nodes = prev.devs.nodes
                    else:
                        nodes = _scan_real(devfd, devm, plan.node_mounts, self.stats)
                finally:
                    os.close(devfd)
        if (devm is None or root.block_nodes_as_files) and held is not None:
            os.close(held)
            held = None
        rdev = plan.root_dev
        if prev is not None and nodes is prev.devs.nodes:
            parts = prev.devs.partitions
        else:
            parts = frozenset(d for d in nodes if is_partition(root, d))
        devs = ContainerDevices(nodes=nodes, root_dev=rdev, root_disk=whole_disk(root, rdev) if rdev else None,
                                partitions=parts)
        return _Entry(now, fp, devs, held, retry_after)


def scan_container_devices(root: HostRoot, pid: int) -> ContainerDevices:
    """The block devices the container whose init is `pid` can see (uncached)."""
    return DeviceNameCache().get(root, pid, 0)


STATE_KEY = "devnames"  # ViewEnv.states key shared by the diskstats and partitions views


def cache_from_states(states: dict[str, object]) -> DeviceNameCache:
    """The one DeviceNameCache kept in ViewEnv.states (created on first use)."""
    c = states.get(STATE_KEY)
    if not isinstance(c, DeviceNameCache):
        c = DeviceNameCache()
        states[STATE_KEY] = c
    return c
