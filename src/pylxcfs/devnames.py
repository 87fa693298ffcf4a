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
  - Fixture trees (HostRoot.is_real_procfs False) cannot hold device nodes in git, so there a REGULAR FILE
    dev/<name> containing "block MAJ:MIN" stands for a block node; the mountinfo rules are the same. Real procfs
    never honours those files.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pylxcfs import syscalls
from pylxcfs.errors import ParseError, ProcessGone
from pylxcfs.hostfs import HostRoot, read_bytes, read_text
from pylxcfs.parse.diskstats import DevT
from pylxcfs.parse.mountinfo import Mount, containing_mount, parse_mountinfo, top_mount_at

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
_RESOLVE = syscalls.RESOLVE_CACHED | syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_BENEATH


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


@dataclass(frozen=True, slots=True)
class DevPlan:
    """What the mountinfo text allows: the root device, and the /dev mount to scan (None: do not scan)."""

    root_dev: DevT | None
    dev_mount: Mount | None
    why_not: str = ""  # why /dev is not scanned (for the debug log)
    node_mounts: dict[str, int] = field(default_factory=dict)  # name -> id of a tmpfs/devtmpfs mount on /dev/<name>


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


def plan_devices(mounts: Sequence[Mount], host_mounts: Callable[[], Sequence[Mount]]) -> DevPlan:
    """Pure: the root device and the /dev mount to scan, from the init's mounts (`host_mounts` is called only
    for an overlay root)."""
    root = top_mount_at(mounts, "/")
    if root is None:
        return DevPlan(None, None, "the root is not a mount (plain chroot)")
    dev = root.devt
    root_dev: DevT | None = dev if dev is not None and dev[0] != 0 else None
    trusted_root = root.fstype in LOCAL_ROOT_FSTYPES or root.is_fuse
    if root.fstype == "overlay":
        host = host_mounts()
        root_dev = overlay_upper_device(root, host)
        # An overlay the engine did not mount in the host's namespace is the tenant's own: its layers may be
        # anything it can see (an NFS bind), so its root is not jumped to.
        trusted_root = any(m.dev == root.dev and m.fstype == "overlay" for m in host)
    devm = top_mount_at(mounts, "/dev")
    if not trusted_root:
        return DevPlan(root_dev, None, f"root filesystem {root.fstype} is not known to be local")
    if devm is None or devm.fstype not in DEV_FSTYPES:
        return DevPlan(root_dev, None, "/dev is not a tmpfs mount" if devm is None else f"/dev is {devm.fstype}")
    node_mounts = {m.mount_point[5:]: m.mount_id for m in mounts
                   if m.fstype in DEV_FSTYPES and m.mount_point.startswith("/dev/")
                   and "/" not in m.mount_point[5:] and top_mount_at(mounts, m.mount_point) is m}
    return DevPlan(root_dev, devm, node_mounts=node_mounts)


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


def _open_dev(root: HostRoot, pid: int, devm: Mount) -> int | None:
    """An fd on the container's /dev, verified to be the mount `devm`; None if it cannot be had safely."""
    try:
        rootfd = os.open(root.proc_path(f"{pid}/root"), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcessGone(f"pid {pid}: {e.strerror}") from None
    except OSError as e:
        log.debug("pid %d: root not usable: %s", pid, e)
        return None
    try:
        devfd = syscalls.openat2(rootfd, "dev", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 _RESOLVE)
    except OSError as e:
        # EAGAIN: `dev` is not in the dentry cache or needs revalidation (a FUSE root): never ask for it.
        log.debug("pid %d: container /dev not reachable from the cache: %s", pid, e)
        return None
    finally:
        os.close(rootfd)
    try:
        if syscalls.statx_mnt_id(devfd) == devm.mount_id:
            return devfd
        log.debug("pid %d: /dev is not mount %d (changed since mountinfo was read)", pid, devm.mount_id)
    except OSError as e:
        log.debug("pid %d: statx on /dev: %s", pid, e)
    os.close(devfd)
    return None


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


def _scan_fixture(root: HostRoot, pid: int, stats: ScanStats) -> dict[DevT, str]:
    """Fixture trees: `dev/<name>` regular files reading "block MAJ:MIN" stand for block nodes."""
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


class DeviceNameCache:
    """The container devices per (proc root, init pid, init start time), re-checked at most every ttl_s: the
    init's mountinfo is re-read (cheap) and /dev rescanned only when its fingerprint changed. Bounded LRU."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, max_entries: int = CACHE_MAX,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.stats = ScanStats()
        self._clock = clock
        self._d: OrderedDict[tuple[str, int, int], tuple[float, Fingerprint | None, ContainerDevices]] = OrderedDict()
        self._host: tuple[float, str, list[Mount]] | None = None

    def __len__(self) -> int:
        return len(self._d)

    def _host_mounts(self, root: HostRoot) -> list[Mount]:
        now = self._clock()
        if self._host is None or self._host[1] != root.proc or now - self._host[0] >= HOST_MOUNTS_TTL_S:
            try:
                mounts = read_mounts(root.proc_path("self/mountinfo"), HOST_MOUNTINFO_CAP_BYTES) or []
            except ProcessGone:
                mounts = []
            self._host = (now, root.proc, mounts)
        return self._host[2]

    def get(self, root: HostRoot, pid: int, start_ticks: int) -> ContainerDevices:
        """The container's devices (cached; see the class docstring)."""
        key = (root.proc, pid, start_ticks)
        now = self._clock()
        hit = self._d.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            self._d.move_to_end(key)
            return hit[2]
        fp, devs = self._gather(root, pid, hit)
        self._d[key] = (now, fp, devs)
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)
        return devs

    def _gather(self, root: HostRoot, pid: int, prev: tuple[float, Fingerprint | None, ContainerDevices] | None,
                ) -> tuple[Fingerprint | None, ContainerDevices]:
        mounts = read_mounts(root.proc_path(f"{pid}/mountinfo"), MOUNTINFO_CAP_BYTES)
        if mounts is None:
            return None, ContainerDevices({}, None, None)
        plan = plan_devices(mounts, lambda: self._host_mounts(root))
        fp: Fingerprint | None = None
        nodes: dict[DevT, str] = {}
        if plan.dev_mount is None:
            log.debug("pid %d: container /dev not scanned: %s", pid, plan.why_not)
        elif not root.is_real_procfs:
            nodes = _scan_fixture(root, pid, self.stats)
        else:
            devfd = _open_dev(root, pid, plan.dev_mount)
            if devfd is not None:
                try:
                    st = os.fstat(devfd)
                    fp = (plan.dev_mount.mount_id, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
                    # Unchanged /dev (same mount, inode, mtime, ctime): the last scan still holds.
                    unchanged = prev is not None and prev[1] == fp
                    if prev is not None and unchanged:
                        nodes = prev[2].nodes
                    else:
                        nodes = _scan_real(devfd, plan.dev_mount, plan.node_mounts, self.stats)
                finally:
                    os.close(devfd)
        rdev = plan.root_dev
        return fp, ContainerDevices(nodes=nodes, root_dev=rdev, root_disk=whole_disk(root, rdev) if rdev else None)


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
