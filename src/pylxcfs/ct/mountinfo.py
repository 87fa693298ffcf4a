"""The toolkit's name for the mountinfo parser and its queries, which live in pylxcfs.parse.mountinfo (the one
place that inspects mounts); re-exported so ct/ and toolkit/ import them from their own package."""

from __future__ import annotations

from pylxcfs.parse.mountinfo import Mount, containing_mount, lxcfs_overlays, mounts_at, parse_mountinfo, top_mount_at

__all__ = ["Mount", "containing_mount", "lxcfs_overlays", "mounts_at", "parse_mountinfo", "top_mount_at"]
