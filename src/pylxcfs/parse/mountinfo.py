"""/proc/<pid>/mountinfo (proc(5)): the parser and the queries over its records, the one place that inspects
mounts. The daemon finds cgroup hierarchies and a container's root and /dev mounts from this TEXT (never statfs),
and the toolkit answers every "is it mounted, by whom, with which propagation?" question from it: reading
mountinfo never touches a FUSE server or any other filesystem, unlike stat() on a mount point.

Pure: text in, Mount records out; queries take records. No I/O here (callers read the text).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
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

    @property
    def devt(self) -> tuple[int, int] | None:
        """(major, minor) of the filesystem, None when the field is malformed. Major 0: no block device
        (an anonymous device: overlay, tmpfs, proc, FUSE, btrfs subvolumes)."""
        major, sep, minor = self.dev.partition(":")
        if sep and major.isdigit() and minor.isdigit():
            return (int(major), int(minor))
        return None

    def super_option(self, name: str) -> str | None:
        """The value of `name=value` among the superblock options (e.g. overlay's upperdir), None if absent."""
        prefix = name + "="
        for opt in self.super_options:
            if opt.startswith(prefix):
                return opt[len(prefix):]
        return None


def overlay_layer_dirs(m: Mount) -> list[str]:
    """The directories an overlay mount is made of, as its superblock options name them: upperdir, workdir, each
    lowerdir entry (":"-separated, "\\:" escaped) and each lowerdir+/datadir+ (Linux 6.7+), octal escapes decoded.
    Text only: nothing is resolved."""
    out: list[str] = []
    for opt in m.super_options:
        name, sep, value = opt.partition("=")
        if not sep or not value:
            continue
        if name == "lowerdir":
            out += [_unescape(p.replace("\\:", ":")) for p in re.split(r"(?<!\\):", value) if p]
        elif name in ("upperdir", "workdir", "lowerdir+", "datadir+"):
            out.append(_unescape(value))
    return out


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


def containing_mount(mounts: Sequence[Mount], path: str) -> Mount | None:
    """The mount that holds `path` judged from the text alone: the top mount at the longest mount point that is
    a whole-component prefix of `path`. Nothing is resolved: `path` must be absolute and free of "." and ".."
    components (else None), and a symlink inside it is not followed (its own mount is what is returned)."""
    parts = path.split("/")
    if not path.startswith("/") or any(p in (".", "..") for p in parts):
        return None
    best: Mount | None = None
    best_len = -1
    for m in mounts:
        mp = m.mount_point
        if mp == "/" or path == mp or path.startswith(mp + "/"):
            n = 0 if mp == "/" else len(mp)
            if n > best_len:
                best_len, best = n, m
    if best is None:
        return None
    return top_mount_at(mounts, best.mount_point)
