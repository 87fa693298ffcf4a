"""Parser for /proc/<pid>/mountinfo (proc(5)); used to find cgroup hierarchies from TEXT, never statfs.

Pure: text in, Mount records out.
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
    """One mountinfo line."""

    mount_id: int
    parent_id: int
    root: str  # root of the mount within its filesystem (for cgroupfs: the cgroup the mount shows)
    mount_point: str
    fstype: str  # "cgroup", "cgroup2", "proc", ...
    source: str
    super_options: tuple[str, ...]  # for v1 cgroupfs: includes the controller names ("cpu", "cpuacct", ...)


def parse_mountinfo(text: str, source: str = "mountinfo") -> tuple[Mount, ...]:
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
                root=_unescape(f[3]),
                mount_point=_unescape(f[4]),
                fstype=g[0],
                source=_unescape(g[1]),
                super_options=tuple(g[2].split(",")) if len(g) > 2 else (),
            )
        )
    return tuple(out)
