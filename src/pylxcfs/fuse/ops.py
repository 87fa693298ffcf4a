"""Binding-neutral filesystem operations over the Renderer: a static inode table, per-handle content.

Role: what both front-ends (the raw protocol worker, fuse/wire.py, and the mfusepy adapter,
fuse/mfuse.py) call. It knows the tree (derived from views.registry), hands out file handles, serves
reads and maps every refusal to an errno through `FsError`, the only error path out. It makes no
rendering decisions and imports no FUSE binding.

Reads behave as the kernel's seq_file files and the C lxcfs do (docs/design-fuse.md, "Reads"): every
read at offset 0 renders afresh for the READING process and keeps the bytes under the handle; a read at
offset > 0 continues that render (a reader never sees a mix of two snapshots); on a handle that never
rendered it renders first (as seq_file does), except for a handle opened through a previous worker, which
may have been mid-read there: end-of-file. Pollers such as top and vmstat keep /proc/stat open and
pread it from offset 0: each sample is new. open() renders nothing. The handle storage (and the
sharing of identical renders) is fuse/handles.py.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import zlib
from dataclasses import dataclass
from typing import Protocol

from pylxcfs.fuse.handles import HandleTable
from pylxcfs.fuse.protocol import FUSE_ROOT_ID, Attr
from pylxcfs.views.registry import directories

log = logging.getLogger(__name__)

DIR_MODE = stat.S_IFDIR | 0o555
FILE_MODE = stat.S_IFREG | 0o444
DT_DIR = 4
DT_REG = 8


class RendererLike(Protocol):
    """The part of pylxcfs.service.Renderer the front-ends use."""

    def paths(self) -> tuple[str, ...]: ...

    def render(self, path: str, caller_pid: int) -> bytes: ...

    def host_bytes(self, path: str) -> bytes: ...


class FsError(Exception):
    """A refusal with an errno; the front-ends turn it into an error reply."""

    def __init__(self, err: int, what: str = "") -> None:
        self.errno = err
        super().__init__(f"{errno.errorcode.get(err, err)}: {what}")


@dataclass(frozen=True, slots=True)
class Node:
    """One entry of the static tree."""

    ino: int
    path: str  # "" for the root, "proc", "proc/meminfo"...
    is_dir: bool
    children: tuple[str, ...] = ()

    def attr(self, size: int = 0) -> Attr:
        """Caller-independent attributes (files: 0444 and the given size; directories: 0555)."""
        if self.is_dir:
            return Attr(self.ino, DIR_MODE, 2, 0)
        return Attr(self.ino, FILE_MODE, 1, size)


def stable_ino(path: str) -> int:
    """The inode number of a path: the root is FUSE_ROOT_ID; others hash the path, so that every worker
    (including one started from newer code on disk) agrees with the kernel's cached node ids."""
    if path == "":
        return FUSE_ROOT_ID
    return 2 + zlib.crc32(path.encode())


class Tree:
    """The static inode table: directories from views.registry.directories(), files from the renderer."""

    def __init__(self, file_paths: tuple[str, ...]) -> None:
        dirs = directories()
        files = set(file_paths)
        self.by_ino: dict[int, Node] = {}
        self.by_path: dict[str, Node] = {}
        for d, children in dirs.items():
            self._add(Node(stable_ino(d), d, True, children))
        for f in files:
            if f not in self.by_path:
                self._add(Node(stable_ino(f), f, False))

    def _add(self, node: Node) -> None:
        if node.ino in self.by_ino:
            raise ValueError(f"inode collision: {node.path!r} and {self.by_ino[node.ino].path!r}")
        self.by_ino[node.ino] = node
        self.by_path[node.path] = node

    def node(self, ino: int) -> Node:
        """The node with inode `ino`; ENOENT if unknown."""
        n = self.by_ino.get(ino)
        if n is None:
            raise FsError(errno.ENOENT, f"inode {ino}")
        return n

    def child(self, parent: int, name: str) -> Node:
        """LOOKUP: the child `name` of directory `parent`."""
        p = self.node(parent)
        if not p.is_dir:
            raise FsError(errno.ENOTDIR, p.path)
        if name == ".":
            return p
        if name == "..":
            return self.by_path[p.path.rpartition("/")[0]] if p.path else p
        n = self.by_path.get(f"{p.path}/{name}" if p.path else name)
        if n is None or name not in p.children:
            raise FsError(errno.ENOENT, f"{p.path}/{name}")
        return n

    def resolve(self, path: str) -> Node:
        """A '/'-separated path ("/proc/meminfo" or "proc/meminfo") to its node; ENOENT if absent."""
        n = self.by_path.get(path.strip("/"))
        if n is None:
            raise FsError(errno.ENOENT, path)
        return n


class Operations:
    """The filesystem: lookup/getattr/open/read/release/opendir/readdir/access/statfs over a Tree."""

    def __init__(self, renderer: RendererLike, salt: int | None = None, handles: HandleTable | None = None) -> None:
        self.renderer = renderer
        self.tree = Tree(renderer.paths())
        self.handles = handles if handles is not None else HandleTable(salt)

    # -- metadata -------------------------------------------------------------------------------
    def attr_of(self, node: Node) -> Attr:
        """A node's attributes; independent of the caller.

        A file's st_size is the length of the HOST file of the same name, as C lxcfs reports
        (virtual-files.md §3.2), not procfs's 0: reads ignore it (direct_io), but sendfile(2) and
        splice(2) go through the page cache, which stops at i_size; busybox `cat` (what a busybox
        container runs) uses sendfile and read an EMPTY file with size 0. Shorter per-container
        content is fine there (FUSE shrinks i_size on a short read); longer content is cut at the host
        size for sendfile readers only, exactly as with lxcfs.
        """
        if node.is_dir:
            return node.attr()
        try:
            size = len(self.renderer.host_bytes(node.path))
        except OSError:
            size = 0
        return node.attr(size)

    def lookup(self, parent: int, name: str) -> Attr:
        """The attributes of `name` in directory `parent`."""
        return self.attr_of(self.tree.child(parent, name))

    def getattr(self, ino: int) -> Attr:
        """Attributes of `ino`; independent of the caller."""
        return self.attr_of(self.tree.node(ino))

    def access(self, ino: int, mask: int) -> None:
        """access(2) semantics of lxcfs: read/execute allowed, write refused (EACCES)."""
        self.tree.node(ino)
        if mask & os.W_OK:
            raise FsError(errno.EACCES, "write access")

    # -- files ----------------------------------------------------------------------------------
    def open(self, ino: int, flags: int, pid: int) -> int:
        """A new handle for a file (nothing is rendered yet: the first read at offset 0 does it, for the reader).
        Write opens: EACCES; directories: EISDIR."""
        node = self.tree.node(ino)
        if node.is_dir:
            raise FsError(errno.EISDIR, node.path)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise FsError(errno.EACCES, f"write open of {node.path}")
        return self.handles.new()

    def read(self, ino: int, fh: int, offset: int, size: int, pid: int) -> bytes:
        """Offset 0: render for the reader `pid`, keep it under the handle, return its head. Offset > 0: bytes
        [offset, offset+size) of the handle's last offset-0 render (b"" at or past its end)."""
        if offset == 0:
            return self._render(ino, fh, pid)[:size]
        if offset < 0:
            raise FsError(errno.EINVAL, "negative offset")
        data = self.handles.content(fh)
        if data is None:
            # Unknown here (opened through a previous worker) and first read from the middle: the render it
            # continues died with that worker, and a new one could mix two snapshots. End of file, as the C lxcfs
            # answers a read at offset > 0 on an fd that never generated content.
            log.debug("foreign handle %#x read at %d: EOF", fh, offset)
            return b""
        if not data:
            # Our handle, never rendered (or rendered empty): a first read from the middle gets that part of a new
            # render, as the kernel's seq_file does for a pread at a position it has not generated.
            data = self._render(ino, fh, pid)
        return data[offset:offset + size]

    def _render(self, ino: int, fh: int, pid: int) -> bytes:
        node = self.tree.by_ino.get(ino)
        if node is None or node.is_dir:
            raise FsError(errno.EISDIR if node is not None else errno.ENOENT, node.path if node else str(ino))
        return self.handles.store(fh, self.renderer.render(node.path, pid))

    def release(self, fh: int) -> None:
        """Forget a handle (unknown handles are ignored: their owner may have been another worker)."""
        self.handles.drop(fh)

    def open_handles(self) -> int:
        """How many handles this process holds (for logs and tests)."""
        return len(self.handles)

    # -- directories ----------------------------------------------------------------------------
    def opendir(self, ino: int) -> int:
        """Directories need no state: handle 0."""
        if not self.tree.node(ino).is_dir:
            raise FsError(errno.ENOTDIR, self.tree.node(ino).path)
        return 0

    def readdir(self, ino: int, offset: int) -> list[tuple[str, int, int, int]]:
        """Entries from index `offset` on, as (name, ino, d_type, next_offset); "." and ".." first."""
        node = self.tree.node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR, node.path)
        parent = self.tree.child(ino, "..")
        entries: list[tuple[str, int, int]] = [(".", node.ino, DT_DIR), ("..", parent.ino, DT_DIR)]
        for name in node.children:
            child = self.tree.child(ino, name)
            entries.append((name, child.ino, DT_DIR if child.is_dir else DT_REG))
        return [(n, i, t, k + 1) for k, (n, i, t) in enumerate(entries) if k >= offset]
