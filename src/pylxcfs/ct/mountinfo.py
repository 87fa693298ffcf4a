"""The lxcfs-specific mountinfo queries the toolkit needs (which mounts are stacked at a path, which lxcfs
overlays a container has), over records from pylxcfs.parse.mountinfo (re-exported here).

No I/O here: callers read the text (reading mountinfo never touches a FUSE server, unlike stat() on a mount point,
which is why every "is it mounted?" question in the toolkit is answered from this text).
"""

from __future__ import annotations

from collections.abc import Sequence

from pylxcfs.parse.mountinfo import Mount, parse_mountinfo

__all__ = ["Mount", "lxcfs_overlays", "mounts_at", "parse_mountinfo", "top_mount_at"]


def mounts_at(mounts: Sequence[Mount], path: str) -> list[Mount]:
    """Mounts stacked at exactly `path`, bottom first (a mount stacked on another has it as parent)."""
    here = [m for m in mounts if m.mount_point == path]
    ids = {m.mount_id for m in here}
    order: list[Mount] = [m for m in here if m.parent_id not in ids]
    while len(order) < len(here):
        nxt = [m for m in here if m.parent_id == order[-1].mount_id and m not in order]
        if not nxt:  # a shape we do not understand: fall back to mount-id order
            return sorted(here, key=lambda m: m.mount_id)
        order.append(nxt[0])
    return order


def top_mount_at(mounts: Sequence[Mount], path: str) -> Mount | None:
    """The mount a path lookup reaches at `path` (the top of the stack), or None."""
    stack = mounts_at(mounts, path)
    return stack[-1] if stack else None


def lxcfs_overlays(mounts: Sequence[Mount], under: tuple[str, ...] = ("/proc/", "/sys/")) -> list[Mount]:
    """lxcfs mounts whose mount point lies under one of `under` (absolute prefixes), topmost-first order
    (descending mount id), which is the order to detach them in."""
    hits = [m for m in mounts if m.is_lxcfs and any(m.mount_point.startswith(p) for p in under)]
    return sorted(hits, key=lambda m: m.mount_id, reverse=True)
