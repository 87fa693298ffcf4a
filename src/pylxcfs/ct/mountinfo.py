"""Pure parser for /proc/<pid>/mountinfo (proc(5)) and the lxcfs-specific queries the toolkit needs.

No I/O here: callers read the text (reading mountinfo never touches a FUSE server, unlike stat() on a mount point,
which is why every "is it mounted?" question in the toolkit is answered from this text).
"""

from __future__ import annotations

from dataclasses import dataclass

from pylxcfs.errors import ParseError


@dataclass(frozen=True, slots=True)
class Mount:
    """One mountinfo line. Paths are relative to the reading process's root, octal escapes decoded."""

    mount_id: int
    parent_id: int
    dev: str
    root: str
    mountpoint: str
    options: str
    optional: tuple[str, ...]
    fstype: str
    source: str
    super_options: str

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
        return self.fstype == "fuse" or self.fstype.startswith("fuse.")


def _unescape(s: str) -> str:
    # The kernel escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c: mangle()).
    out: list[str] = []
    i = 0
    while i < len(s):
        chunk = s[i + 1:i + 4]
        if s[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str, source: str = "mountinfo") -> list[Mount]:
    """Parse the whole file; raises ParseError on a malformed line."""
    mounts: list[Mount] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        left, sep, right = line.partition(" - ")
        f = left.split(" ")
        r = right.split(" ")
        if not sep or len(f) < 6 or len(r) < 2:
            raise ParseError(source, "malformed mountinfo line", lineno, line)
        try:
            mounts.append(Mount(int(f[0]), int(f[1]), f[2], _unescape(f[3]), _unescape(f[4]), f[5],
                                tuple(x for x in f[6:] if x), r[0], _unescape(r[1]),
                                r[2] if len(r) > 2 else ""))
        except ValueError as exc:
            raise ParseError(source, f"bad mount id: {exc}", lineno, line) from None
    return mounts


def mounts_at(mounts: list[Mount], path: str) -> list[Mount]:
    """Mounts stacked at exactly `path`, bottom first (a mount stacked on another has it as parent)."""
    here = [m for m in mounts if m.mountpoint == path]
    ids = {m.mount_id for m in here}
    order: list[Mount] = [m for m in here if m.parent_id not in ids]
    while len(order) < len(here):
        nxt = [m for m in here if m.parent_id == order[-1].mount_id and m not in order]
        if not nxt:  # a shape we do not understand: fall back to mount-id order
            return sorted(here, key=lambda m: m.mount_id)
        order.append(nxt[0])
    return order


def top_mount_at(mounts: list[Mount], path: str) -> Mount | None:
    """The mount a path lookup reaches at `path` (the top of the stack), or None."""
    stack = mounts_at(mounts, path)
    return stack[-1] if stack else None


def lxcfs_overlays(mounts: list[Mount], under: tuple[str, ...] = ("/proc/", "/sys/")) -> list[Mount]:
    """lxcfs mounts whose mount point lies under one of `under` (absolute prefixes), topmost-first order
    (descending mount id), which is the order to detach them in."""
    hits = [m for m in mounts if m.is_lxcfs and any(m.mountpoint.startswith(p) for p in under)]
    return sorted(hits, key=lambda m: m.mount_id, reverse=True)
