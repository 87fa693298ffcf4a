"""PURE mount plans: what to mount where, computed from the lxcfs dir, the container's root and the registry.

The list of targets comes from pylxcfs.views.registry.bind_targets(), never from a second list: every file row
outside a directory view, and each directory view's directory as ONE directory bind (/sys/devices/system/cpu, as
LXCFS 5+ binds it: only a directory mount can hide the cpuN entries that are not the container's). A plan names paths
relative to a root directory (the container's "/" for a running container, the rootfs directory before pivot_root
for a hook), so apply.py can resolve every target INSIDE that root with openat2(RESOLVE_IN_ROOT).
No I/O and no kernel calls here (design.md §3.1 rule 5).
"""

from __future__ import annotations

import posixpath
from dataclasses import asdict, dataclass
from typing import Any

from pylxcfs.parse.mountinfo import Mount
from pylxcfs.views.registry import bind_targets

DEFAULT_LXCFS_DIR = "/var/lib/lxc/lxcfs"
# Where lxcfs files may be overlaid inside a container (relative to its root): the bind targets live under
# proc/ and sys/, and umount removes every lxcfs mount found there (also ones left by other tools).
OVERLAY_PREFIXES: tuple[str, ...] = ("proc/", "sys/")


@dataclass(frozen=True, slots=True)
class BindMount:
    """Put the daemon's `source` (absolute, in the toolkit's mount namespace) over `target` (relative to the root).
    `directory`: the source is a directory view and the target must be a directory (else a regular file)."""

    view: str
    source: str
    target: str
    directory: bool = False


@dataclass(frozen=True, slots=True)
class AttachPlan:
    """Mount every served file into one container (remount or hook).

    pid: enter /proc/<pid>/ns/mnt before resolving targets (None: stay in the current namespace, createContainer).
    start_time: the pid's start time (field 22 of /proc/<pid>/stat) when known, checked again in the worker.
    root: absolute path, in the entered namespace, of the container's "/" ("/" once pivoted, the rootfs before).
    classic_dir: the lxcfs dir as seen inside the entered namespace, for the classic-bind fallback (kernel < 5.2).
    live_dev: the live daemon's device ("0:42" in mountinfo) when known: a target already covered by exactly one
    mount of that device is kept as it is (remount of a healthy container changes nothing and never uncovers the
    file); anything else lxcfs at a target is stale and replaced.
    """

    container: str
    pid: int | None
    start_time: int | None
    root: str
    mounts: tuple[BindMount, ...]
    classic_dir: str
    live_dev: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DetachPlan:
    """Remove every lxcfs mount under `prefixes` of the container's root (umount; needs no daemon)."""

    container: str
    pid: int | None
    start_time: int | None
    root: str
    prefixes: tuple[str, ...] = OVERLAY_PREFIXES

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def attach_plan(container: str, lxcfs_dir: str, root: str, pid: int | None, start_time: int | None = None,
                views: tuple[tuple[str, bool], ...] | None = None, live_dev: str | None = None) -> AttachPlan:
    """One BindMount per bind target (path, is_directory; default: the registry's): `<lxcfs_dir>/<path>` over
    `<root>/<path>`. Missing sources/targets are skipped at apply time (the daemon may not serve loadavg; a
    container may lack a file), never here."""
    lxcfs_dir = posixpath.normpath(lxcfs_dir)
    if not posixpath.isabs(lxcfs_dir) or not posixpath.isabs(root):
        raise ValueError(f"lxcfs dir {lxcfs_dir!r} and root {root!r} must be absolute")
    mounts = []
    for view, is_dir in bind_targets() if views is None else views:
        norm = posixpath.normpath(view)
        if norm.startswith(("/", "..")) or norm != view:
            raise ValueError(f"view path {view!r} is not a clean relative path")
        mounts.append(BindMount(view, posixpath.join(lxcfs_dir, view), view, is_dir))
    return AttachPlan(container, pid, start_time, posixpath.normpath(root), tuple(mounts), lxcfs_dir, live_dev)


def detach_plan(container: str, root: str, pid: int | None, start_time: int | None = None) -> DetachPlan:
    if not posixpath.isabs(root):
        raise ValueError(f"root {root!r} must be absolute")
    return DetachPlan(container, pid, start_time, posixpath.normpath(root))


def relative_to_root(mountpoint: str, root: str) -> str | None:
    """`mountpoint` (absolute, as in mountinfo) relative to `root`, or None when outside it."""
    root = posixpath.normpath(root)
    mp = posixpath.normpath(mountpoint)
    if root == "/":
        return mp.lstrip("/") or None
    if mp.startswith(root + "/"):
        return mp[len(root) + 1:]
    return None


def lxcfs_mounts_under(mounts: list[Mount], root: str, prefixes: tuple[str, ...]) -> list[tuple[Mount, str]]:
    """(mount, relative target) of every lxcfs mount under root/<prefix>, topmost first (highest mount id)."""
    out = []
    for m in mounts:
        if not m.is_lxcfs:
            continue
        rel = relative_to_root(m.mount_point, root)
        if rel is not None and rel.startswith(prefixes):
            out.append((m, rel))
    return sorted(out, key=lambda t: t[0].mount_id, reverse=True)


def stacked_lxcfs(mounts: list[Mount], root: str, target: str) -> int:
    """How many lxcfs mounts are stacked at root/target (0 = none; >1 = stacked, which remount must prevent)."""
    full = posixpath.join(posixpath.normpath(root), target)
    return sum(1 for m in mounts if m.is_lxcfs and posixpath.normpath(m.mount_point) == full)
