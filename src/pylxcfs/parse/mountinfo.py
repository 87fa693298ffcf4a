"""Parser for /proc/<pid>/mountinfo (proc(5)): the daemon finds cgroup hierarchies from this TEXT (never
statfs), and the toolkit answers every "is it mounted, by whom, with which propagation?" question from it
(reading mountinfo never touches a FUSE server, unlike stat() on a mount point).

Pure: text in, Mount records out. The toolkit's queries over the records live in pylxcfs.ct.mountinfo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pylxcfs.errors import ParseError

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(s: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo in paths (fs/proc_namespace.c mangle()).
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), s) if "\\" in s else s


@dataclass(frozen=True, slots=True)
class Mount:
    """One mountinfo line. Paths are relative to the reading process's root, octal escapes decoded."""

    mount_id: int
    parent_id: int
    dev: str  # "major:minor" of the filesystem (one FUSE connection = one dev)
    root: str  # root of the mount within its filesystem (for cgroupfs: the cgroup the mount shows)
    mount_point: str
    options: str  # per-mount options ("rw,nosuid,...")
    optional: tuple[str, ...]  # optional fields: "shared:N", "master:N", "propagate_from:N", "unbindable"
    fstype: str  # "cgroup", "cgroup2", "proc", "fuse.lxcfs", ...
    source: str
    super_options: tuple[str, ...]  # for v1 cgroupfs: includes the controller names ("cpu", "cpuacct", ...)

    @property
    def is_shared(self) -> bool:
        """True when the mount is in a peer group (`shared:N`), the propagation lxcfs mounts must never have."""
        return any(o.startswith("shared:") for o in self.optional)

    @property
    def is_lxcfs(self) -> bool:
        """A mount of an lxcfs-compatible daemon: `lxcfs on X type fuse.lxcfs` (C lxcfs and pylxcfs alike)."""
        return self.fstype == "fuse.lxcfs" or (self.fstype.startswith("fuse") and self.source == "lxcfs")

    @property
    def is_fuse(self) -> bool:
        """Any FUSE mount ("fuse" or "fuse.<subtype>")."""
        return self.fstype == "fuse" or self.fstype.startswith("fuse.")


def parse_mountinfo(text: str, source: str = "mountinfo") -> list[Mount]:
    """All mounts, in file order."""
    out: list[Mount] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        pre, sep, post = line.partition(" - ")
        f = pre.split()
        g = post.split()
        if not sep or len(f) < 6 or len(g) < 2:
            raise ParseError(source, "malformed mountinfo line", lineno, line)
        try:
            mid, pid = int(f[0]), int(f[1])
        except ValueError:
            raise ParseError(source, "bad mount id", lineno, line) from None
        out.append(
            Mount(
                mount_id=mid,
                parent_id=pid,
                dev=f[2],
                root=_unescape(f[3]),
                mount_point=_unescape(f[4]),
                options=f[5],
                optional=tuple(f[6:]),
                fstype=g[0],
                source=_unescape(g[1]),
                super_options=tuple(g[2].split(",")) if len(g) > 2 else (),
            )
        )
    return out
