"""Which block devices a container can see, and under which names (gather layer for diskstats/partitions).

The product rule (seed, "约束限制"): diskstats shows only the container's disks, each named as it is
under the container's /dev; the device holding the container's root filesystem is shown as `sda`; a
device with no name in the container is left out.

How:
  - The container's /dev is reached through /proc/<init>/root (the magic link resolves to the init's
    root in ITS mount namespace, so a tmpfs /dev mounted there is what we see). `dev` is opened with
    O_NOFOLLOW relative to that root fd and entries are examined with lstat semantics, so a symlinked
    /dev or a symlinked node can never make us look at a path outside the container (an absolute
    symlink would otherwise resolve against the DAEMON's root). Only top-level /dev entries count
    (subdirectories such as /dev/mapper hold udev symlinks to top-level nodes).
  - The root device is st_dev of /proc/<init>/root; when that is an anonymous device (major 0: overlay,
    btrfs subvolume, tmpfs), the "/" entry of /proc/<init>/mountinfo; for overlayfs, the device of its
    upperdir (a path in the daemon's mount namespace, where container engines mount the rootfs).
  - Fixture trees (HostRoot.is_real_procfs False) cannot hold device nodes in git, so there a REGULAR
    FILE dev/<name> containing "block MAJ:MIN" stands for a block node, and only mountinfo is used for
    the root device. Real procfs never honours those files.
  - Scanning costs one getdents plus one fstatat per non-directory entry; results are cached per
    (proc root, init pid, init start time) for at most CACHE_TTL_S seconds (a node created in the
    container shows up within that time), with at most CACHE_MAX entries.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass

from pylxcfs.errors import ProcessGone
from pylxcfs.hostfs import HostRoot, read_text
from pylxcfs.parse.diskstats import DevT

log = logging.getLogger(__name__)

CACHE_TTL_S = 1.0
CACHE_MAX = 256
FIXTURE_NODE_PREFIX = "block "


@dataclass(frozen=True, slots=True)
class ContainerDevices:
    """Block devices visible in one container.

    nodes: device -> the name of its node in the container's top-level /dev (alphabetically first name
    when several nodes point at one device). root_dev: the device holding the container's root
    filesystem, None when it is not a block device. root_disk: the whole disk of root_dev (root_dev
    itself when it is not a partition or sysfs does not say).
    """

    nodes: dict[DevT, str]
    root_dev: DevT | None
    root_disk: DevT | None


def _split_dev(st_dev: int) -> DevT:
    return (os.major(st_dev), os.minor(st_dev))


def _parse_devt(text: str) -> DevT | None:
    major, sep, minor = text.strip().partition(":")
    if sep and major.isdigit() and minor.isdigit():
        return (int(major), int(minor))
    return None


def root_entry_from_mountinfo(text: str) -> tuple[DevT, str, str] | None:
    """(MAJ:MIN, fstype, super options) of the topmost mount on "/" in a mountinfo text, or None."""
    found: tuple[DevT, str, str] | None = None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        f, g = pre.split(), post.split()
        if not sep or len(f) < 5 or len(g) < 2 or f[4] != "/":
            continue
        dev = _parse_devt(f[2])
        if dev is None:
            continue
        # Later lines are mounted on top of earlier ones (the kernel lists mounts in mount order).
        found = (dev, g[0], g[2] if len(g) > 2 else "")
    return found


def _scan_dev(root: HostRoot, pid: int) -> dict[DevT, str]:
    try:
        rootfd = os.open(root.proc_path(f"{pid}/root"), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError) as e:
        raise ProcessGone(f"pid {pid}: {e.strerror}") from None
    try:
        try:
            devfd = os.open("dev", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=rootfd)
        except OSError as e:
            # ENOENT: no /dev; ELOOP/ENOTDIR: /dev is a symlink or a file -> nothing we may look at.
            log.debug("pid %d: container /dev not usable: %s", pid, e)
            return {}
    finally:
        os.close(rootfd)
    nodes: dict[DevT, str] = {}
    try:
        with os.scandir(devfd) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False) or entry.is_symlink():
                    continue
                if not _printable_name(entry.name):
                    continue  # a name with whitespace or control characters would break the line format
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed while we scanned
                dev: DevT | None = None
                if stat.S_ISBLK(st.st_mode):
                    dev = _split_dev(st.st_rdev)
                elif stat.S_ISREG(st.st_mode) and not root.is_real_procfs and st.st_size < 64:
                    dev = _fixture_node(devfd, entry.name)
                if dev is None:
                    continue
                prev = nodes.get(dev)
                if prev is None or entry.name < prev:
                    nodes[dev] = entry.name
    finally:
        os.close(devfd)
    return nodes


def _printable_name(name: str) -> bool:
    """True for names that fit a whitespace-separated /proc line (what the kernel's device names are)."""
    return name.isprintable() and not any(c.isspace() for c in name)


def _fixture_node(devfd: int, name: str) -> DevT | None:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=devfd)
    try:
        text = os.read(fd, 64).decode("ascii", "replace")
    finally:
        os.close(fd)
    if not text.startswith(FIXTURE_NODE_PREFIX):
        return None
    return _parse_devt(text[len(FIXTURE_NODE_PREFIX):])


def _root_dev(root: HostRoot, pid: int) -> DevT | None:
    if root.is_real_procfs:
        try:
            dev = _split_dev(os.stat(root.proc_path(f"{pid}/root")).st_dev)
        except (FileNotFoundError, ProcessLookupError) as e:
            raise ProcessGone(f"pid {pid}: {e.strerror}") from None
        if dev[0] != 0:
            return dev
    try:
        entry = root_entry_from_mountinfo(read_text(root.proc_path(f"{pid}/mountinfo")))
    except (FileNotFoundError, ProcessLookupError):
        return None
    if entry is None:
        return None
    dev, fstype, superopts = entry
    if dev[0] != 0:
        return dev
    if fstype == "overlay" and root.is_real_procfs:
        for opt in superopts.split(","):
            if opt.startswith("upperdir="):
                try:
                    udev = _split_dev(os.lstat(opt[len("upperdir="):]).st_dev)
                except OSError:
                    return None
                return udev if udev[0] != 0 else None
    return None


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


def scan_container_devices(root: HostRoot, pid: int) -> ContainerDevices:
    """The block devices the container whose init is `pid` can see (uncached)."""
    nodes = _scan_dev(root, pid)
    rdev = _root_dev(root, pid)
    return ContainerDevices(nodes=nodes, root_dev=rdev, root_disk=whole_disk(root, rdev) if rdev else None)


class DeviceNameCache:
    """Bounded TTL cache of scan_container_devices, keyed by (proc root, init pid, init start time)."""

    def __init__(self, ttl_s: float = CACHE_TTL_S, max_entries: int = CACHE_MAX) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._d: OrderedDict[tuple[str, int, int], tuple[float, ContainerDevices]] = OrderedDict()

    def get(self, root: HostRoot, pid: int, start_ticks: int) -> ContainerDevices:
        """Cached devices of the container, rescanned when older than ttl_s."""
        key = (root.proc, pid, start_ticks)
        now = time.monotonic()
        hit = self._d.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            self._d.move_to_end(key)
            return hit[1]
        devs = scan_container_devices(root, pid)
        self._d[key] = (now, devs)
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)
        return devs


STATE_KEY = "devnames"  # ViewEnv.states key shared by the diskstats and partitions views


def cache_from_states(states: dict[str, object]) -> DeviceNameCache:
    """The one DeviceNameCache kept in ViewEnv.states (created on first use)."""
    c = states.get(STATE_KEY)
    if not isinstance(c, DeviceNameCache):
        c = DeviceNameCache()
        states[STATE_KEY] = c
    return c
