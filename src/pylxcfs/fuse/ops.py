"""Binding-neutral filesystem operations over the Renderer: a static inode table, per-handle content.

Role: what both front-ends (the raw protocol worker, fuse/wire.py, and the mfusepy adapter,
fuse/mfuse.py) call. It knows the tree (derived from views.registry), hands out file handles, serves
reads and maps every refusal to an errno through `FsError`, the only error path out. It makes no
rendering decisions and imports no FUSE binding.

Reads behave as the kernel's seq_file files and the C lxcfs do (docs/design-fuse.md, "Reads"): every
read at offset 0 renders afresh for the READING process; a read at offset > 0 continues that render (a
reader never sees a mix of two snapshots: a render the reader got only part of is kept under the handle, one
delivered whole by one READ keeps only its length, so its EOF read needs no bytes); on a handle that never
rendered it renders first (as seq_file does), except for a handle opened through a previous worker, which
may have been mid-read there: end-of-file. Pollers such as top and vmstat keep /proc/stat open and
pread it from offset 0: each sample is new. open() renders nothing. The handle storage (and the
sharing of identical renders) is fuse/handles.py.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import time
import zlib
from dataclasses import dataclass
from typing import Protocol

from pylxcfs.fuse.handles import HandlesFull, HandleTable
from pylxcfs.fuse.protocol import FUSE_ROOT_ID, Attr
from pylxcfs.hosttree import HostTree, bad_name
from pylxcfs.log import RateLimited
from pylxcfs.views.registry import directories

log = logging.getLogger(__name__)

DIR_MODE = stat.S_IFDIR | 0o555
FILE_MODE = stat.S_IFREG | 0o444
DT_DIR = 4
DT_REG = 8
DT_LNK = 10
_DTYPE = {stat.S_IFDIR: DT_DIR, stat.S_IFREG: DT_REG, stat.S_IFLNK: DT_LNK}
_WRITE_BITS = 0o222
# Passthrough nodes a Tree registers at most (a 256-CPU host's /sys/devices/system/cpu has ~30000 entries),
# and how often an unknown inode may trigger a walk of the host directories.
MAX_PASSTHROUGH_NODES = 200_000
_WALK_EVERY_S = 1.0


class RendererLike(Protocol):
    """The part of pylxcfs.service.Renderer the front-ends use."""

    def paths(self) -> tuple[str, ...]: ...

    def tree_paths(self) -> tuple[str, ...]: ...

    def render(self, path: str, caller_pid: int) -> bytes: ...

    def host_bytes(self, path: str) -> bytes: ...

    def host_tree(self, tree: str) -> HostTree: ...

    def hidden(self, tree: str, caller_pid: int, names: list[str]) -> frozenset[str]: ...


class Referred(Exception):
    """A pool worker rendered another worker's handle at offset 0 and the reader takes only part of it: the
    render must be kept where the handle's later reads go (its owner), so the request is handed there."""


class FsError(Exception):
    """A refusal with an errno; the front-ends turn it into an error reply."""

    def __init__(self, err: int, what: str = "") -> None:
        self.errno = err
        super().__init__(f"{errno.errorcode.get(err, err)}: {what}")


@dataclass(frozen=True, slots=True)
class Node:
    """One entry of the tree: static (a registry file or a directory leading to one) or passed through from
    the host directory of a directory view (`tree` set, `rel` its path inside that directory)."""

    ino: int
    path: str  # "" for the root, "proc", "proc/meminfo"...
    is_dir: bool
    children: tuple[str, ...] = ()  # static children only
    tree: str | None = None  # the directory view this node is in (its root included), None outside any
    rel: str = ""  # path relative to the tree's directory ("" for the tree root itself)
    passthrough: bool = False  # an entry of the host directory, not a registry file
    is_link: bool = False

    def attr(self, size: int = 0) -> Attr:
        """Caller-independent attributes of a static node (files: 0444 and the given size; directories: 0555)."""
        if self.is_dir:
            return Attr(self.ino, DIR_MODE, 2, 0)
        return Attr(self.ino, FILE_MODE, 1, size)

    @property
    def per_caller(self) -> bool:
        """True when whether this entry exists depends on the caller: a top-level entry of a directory view.
        The kernel caches positive dentries for every caller of the one superblock, so such entries are
        returned with entry timeout 0 (each path walk through them asks us again)."""
        return self.passthrough and "/" not in self.rel


def stable_ino(path: str) -> int:
    """The inode number of a path: the root is FUSE_ROOT_ID; others hash the path, so that every worker
    (including one started from newer code on disk) agrees with the kernel's cached node ids."""
    if path == "":
        return FUSE_ROOT_ID
    return 2 + zlib.crc32(path.encode())


def passthrough_ino(path: str) -> int:
    """Inode number of a host entry passed through: 63 bits of a hash of the path, top bit set, so it never meets
    a static node's (below 2**32 + 2) and thousands of them do not collide (crc32 would, with ~1% chance)."""
    h = int.from_bytes(hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")
    return (1 << 63) | (h & ((1 << 63) - 1))


class Tree:
    """The inode table: static nodes from views.registry, plus host entries of directory views as they are met.

    Passthrough nodes are registered by LOOKUP and READDIR; a worker asked about an inode it never handed out
    (another worker did) walks the host directories once to learn their names (inode numbers are hashes of
    paths, the same in every worker)."""

    def __init__(self, file_paths: tuple[str, ...], tree_paths: tuple[str, ...] = (),
                 host_trees: dict[str, HostTree] | None = None) -> None:
        dirs = directories(file_paths)  # a directory exists only for the files served (host_optional rows)
        files = set(file_paths)
        self.trees = tuple(sorted(tree_paths, key=len, reverse=True))
        self.host_trees = host_trees or {}
        self.by_ino: dict[int, Node] = {}
        self.by_path: dict[str, Node] = {}
        self._last_walk = -1e18
        for d, children in dirs.items():
            t = self._tree_of(d)
            self._add(Node(stable_ino(d), d, True, children, t, self._rel(t, d)))
        for f in files:
            if f not in self.by_path:
                t = self._tree_of(f)
                self._add(Node(stable_ino(f), f, False, (), t, self._rel(t, f)))

    def _tree_of(self, path: str) -> str | None:
        for t in self.trees:
            if path == t or path.startswith(t + "/"):
                return t
        return None

    @staticmethod
    def _rel(tree: str | None, path: str) -> str:
        return "" if tree is None or path == tree else path[len(tree) + 1:]

    def _add(self, node: Node) -> None:
        if node.ino in self.by_ino:
            raise ValueError(f"inode collision: {node.path!r} and {self.by_ino[node.ino].path!r}")
        self.by_ino[node.ino] = node
        self.by_path[node.path] = node

    def passthrough(self, parent: Node, name: str, mode: int) -> Node:
        """The node of host entry `name` in directory `parent` (a tree's root or a passthrough directory)."""
        assert parent.tree is not None
        path = f"{parent.path}/{name}"
        n = self.by_path.get(path)
        is_dir, is_link = stat.S_ISDIR(mode), stat.S_ISLNK(mode)
        if n is not None and n.passthrough and n.is_dir == is_dir and n.is_link == is_link:
            return n
        rel = f"{parent.rel}/{name}" if parent.rel else name
        n = Node(passthrough_ino(path), path, is_dir, (), parent.tree, rel, True, is_link)
        if len(self.by_ino) < MAX_PASSTHROUGH_NODES or n.ino in self.by_ino:
            self.by_ino[n.ino] = n
            self.by_path[path] = n
        return n

    def _walk(self) -> None:
        """Register every entry below every directory view (an inode we never handed out was asked for)."""
        now = time.monotonic()
        if now - self._last_walk < _WALK_EVERY_S:
            return
        self._last_walk = now
        for t in self.trees:
            host = self.host_trees.get(t)
            root = self.by_path.get(t)
            if host is None or root is None:
                continue
            todo = [root]
            while todo and len(self.by_ino) < MAX_PASSTHROUGH_NODES:
                d = todo.pop()
                try:
                    entries = host.listdir(d.rel)
                except OSError:
                    continue
                for name, mode in entries:
                    if f"{d.path}/{name}" in self.by_path and not self.by_path[f"{d.path}/{name}"].passthrough:
                        continue  # a registry file shadows the host entry
                    n = self.passthrough(d, name, mode)
                    if n.is_dir:
                        todo.append(n)

    def node(self, ino: int) -> Node:
        """The node with inode `ino`; ENOENT if unknown."""
        n = self.by_ino.get(ino)
        if n is None and ino >> 63 and self.trees:
            self._walk()
            n = self.by_ino.get(ino)
        if n is None:
            raise FsError(errno.ENOENT, f"inode {ino}")
        return n

    def parent_of(self, node: Node) -> Node:
        """The directory holding `node` (the root for the root)."""
        if not node.path:
            return node
        return self.by_path[node.path.rpartition("/")[0]]

    def child(self, parent: int, name: str) -> Node:
        """The STATIC child `name` of directory `parent` (directory views' host entries: Operations.lookup)."""
        p = self.node(parent)
        if not p.is_dir:
            raise FsError(errno.ENOTDIR, p.path)
        if name == ".":
            return p
        if name == "..":
            return self.parent_of(p)
        n = self.by_path.get(f"{p.path}/{name}" if p.path else name)
        if n is None or n.passthrough or name not in p.children:
            raise FsError(errno.ENOENT, f"{p.path}/{name}")
        return n

    def resolve(self, path: str) -> Node:
        """A '/'-separated path ("/proc/meminfo" or "proc/meminfo") to its static node; ENOENT if absent."""
        n = self.by_path.get(path.strip("/"))
        if n is None or n.passthrough:
            raise FsError(errno.ENOENT, path)
        return n


class Operations:
    """The filesystem: lookup/getattr/open/read/release/opendir/readdir/access/statfs over a Tree."""

    def __init__(self, renderer: RendererLike, salt: int | None = None, handles: HandleTable | None = None) -> None:
        self.renderer = renderer
        trees = renderer.tree_paths()
        self.tree = Tree(renderer.paths(), trees, {t: renderer.host_tree(t) for t in trees})
        self.handles = handles if handles is not None else HandleTable(salt)
        self._full_warnings = RateLimited(log, 60.0)
        # Set by a pool worker (fuse/worker.py): a partial offset-0 read of another worker's handle raises Referred
        # instead of keeping the render here, where its continuation would not come.
        self.refer_foreign_partials = False

    # -- metadata -------------------------------------------------------------------------------
    def attr_of(self, node: Node) -> Attr:
        """A node's attributes; independent of the caller.

        A static file's st_size is the length of the HOST file of the same name, as C lxcfs reports
        (virtual-files.md §3.2), not procfs's 0: reads ignore it (direct_io), but sendfile(2) and
        splice(2) go through the page cache, which stops at i_size; busybox `cat` (what a busybox
        container runs) uses sendfile and read an EMPTY file with size 0. Shorter per-container
        content is fine there (FUSE shrinks i_size on a short read); longer content is cut at the host
        size for sendfile readers only, exactly as with lxcfs.
        A passthrough node has the host entry's lstat: type, permissions without the write bits (nothing is
        writable here), link count and size.
        """
        if node.passthrough:
            st = self._host_lstat(node)
            mode = st.st_mode if node.is_link else st.st_mode & ~_WRITE_BITS  # a symlink's bits mean nothing
            return Attr(node.ino, mode, st.st_nlink, st.st_size)
        if node.is_dir:
            return node.attr()
        try:
            size = len(self.renderer.host_bytes(node.path))
        except OSError:
            size = 0
        return node.attr(size)

    def _host(self, node: Node) -> HostTree:
        assert node.tree is not None
        return self.tree.host_trees[node.tree]

    def _host_lstat(self, node: Node) -> os.stat_result:
        try:
            return self._host(node).lstat(node.rel)
        except OSError as e:
            raise FsError(e.errno or errno.EIO, node.path) from None

    def _check_visible(self, node: Node, pid: int) -> None:
        """ENOENT when `node` lies below a top-level entry of its directory view that `pid` does not see."""
        if node.tree is None or not node.rel or not node.passthrough:
            return
        top = node.rel.split("/", 1)[0]
        if top in self.renderer.hidden(node.tree, pid, [top]):
            raise FsError(errno.ENOENT, node.path)

    def lookup_node(self, parent: int, name: str, pid: int = 0) -> Node:
        """LOOKUP: the child `name` of directory `parent` as `pid` sees it."""
        try:
            return self.tree.child(parent, name)
        except FsError as e:
            p = self.tree.node(parent)
            if e.errno != errno.ENOENT or p.tree is None or bad_name(name):
                raise
        self._check_visible(p, pid)
        if not p.rel and name in self.renderer.hidden(p.tree, pid, [name]):
            raise FsError(errno.ENOENT, f"{p.path}/{name}")
        try:
            st = self._host(p).lstat(f"{p.rel}/{name}" if p.rel else name)
        except OSError as e:
            raise FsError(e.errno or errno.EIO, f"{p.path}/{name}") from None
        return self.tree.passthrough(p, name, st.st_mode)

    def lookup(self, parent: int, name: str, pid: int = 0) -> Attr:
        """The attributes of `name` in directory `parent`, as `pid` sees it."""
        return self.attr_of(self.lookup_node(parent, name, pid))

    def per_caller(self, ino: int) -> bool:
        """Whether the existence of `ino` differs per caller (answer its LOOKUP with entry timeout 0)."""
        n = self.tree.by_ino.get(ino)
        return n is not None and n.per_caller

    def resolve_path(self, path: str, pid: int = 0) -> Node:
        """A '/'-separated path to its node as `pid` sees it (path-based front-ends); ENOENT if absent."""
        node = self.tree.node(FUSE_ROOT_ID)
        for name in filter(None, path.split("/")):
            node = self.lookup_node(node.ino, name, pid)
        return node

    def getattr(self, ino: int) -> Attr:
        """Attributes of `ino`; independent of the caller."""
        return self.attr_of(self.tree.node(ino))

    def readlink(self, ino: int) -> str:
        """The target of a passthrough symlink, as the host has it (relative targets then resolve through this
        tree in the reader's namespace, exactly as on the host)."""
        node = self.tree.node(ino)
        if not node.is_link:
            raise FsError(errno.EINVAL, node.path)
        try:
            return self._host(node).readlink(node.rel)
        except OSError as e:
            raise FsError(e.errno or errno.EIO, node.path) from None

    def access(self, ino: int, mask: int) -> None:
        """access(2) semantics of lxcfs: read/execute allowed, write refused (EACCES)."""
        self.tree.node(ino)
        if mask & os.W_OK:
            raise FsError(errno.EACCES, "write access")

    def content(self, node: Node, pid: int) -> bytes:
        """What `pid` reads from file `node`: the registry view rendered for it, or the host file passed through
        (its refusal, e.g. EACCES of a write-only sysfs attribute, as an FsError)."""
        if not node.passthrough:
            return self.renderer.render(node.path, pid)
        if node.is_dir or node.is_link:
            raise FsError(errno.EISDIR if node.is_dir else errno.ELOOP, node.path)
        self._check_visible(node, pid)
        try:
            return self._host(node).read(node.rel)
        except OSError as e:
            raise FsError(e.errno or errno.EIO, node.path) from None

    # -- files ----------------------------------------------------------------------------------
    def open(self, ino: int, flags: int, pid: int) -> int:
        """A new handle for a file (nothing is rendered yet: the first read at offset 0 does it, for the reader).
        Write opens: EACCES; directories: EISDIR."""
        node = self.tree.node(ino)
        if node.is_dir:
            raise FsError(errno.EISDIR, node.path)
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise FsError(errno.EACCES, f"write open of {node.path}")
        self._check_visible(node, pid)  # below a cpuN this caller does not see: ENOENT already at open
        return self.handles.new()

    def read(self, ino: int, fh: int, offset: int, size: int, pid: int) -> bytes:
        """Offset 0: render for the reader `pid` and return its head. Offset > 0: bytes [offset, offset+size) of
        the handle's kept render (a reader took only part of it), else end of file. ENOMEM when a partly read
        render cannot be kept (fuse/handles.py: the byte cap)."""
        if offset == 0:
            return self._render(ino, fh, pid, 0, size)
        if offset < 0:
            raise FsError(errno.EINVAL, "negative offset")
        handles = self.handles
        data = handles.content(fh)
        if data and isinstance(data, bytes):
            if handles.resume.get(fh) != offset:
                # Not where the reader's last piece ended: a seek, or the EOF read after a newer render another
                # pool worker delivered whole (these bytes are then an older snapshot). End of file.
                return b""
            piece = data[offset:offset + size]
            if offset + size >= len(data):
                handles.delivered(fh, len(data))  # the last piece: the EOF read needs only the length
            else:
                handles.resume[fh] = offset + size
            return piece
        # No kept bytes: the last render went to the reader whole (this is its EOF read), none was made here (a
        # pool worker may have rendered it whole, or it was opened through a previous worker), or none at all. End
        # of file in every case, as the C lxcfs answers a read at offset > 0 on an fd that has no content. A fresh
        # render's slice would be wrong here: when another worker delivered a render of a different length, the
        # reader's EOF read would get the tail of a second snapshot.
        return b""

    def _render(self, ino: int, fh: int, pid: int, offset: int, size: int) -> bytes:
        """Render for `pid` (or pass the host file through), record it under the handle, return bytes
        [offset, offset+size)."""
        node = self.tree.node(ino)  # a passthrough inode another worker handed out is found by a walk
        if node.is_dir:
            raise FsError(errno.EISDIR, node.path)
        data = self.content(node, pid)
        end = offset + size
        if end < len(data) and self.refer_foreign_partials and fh >> 32 != self.handles.salt:
            raise Referred(node.path)
        if end >= len(data):
            self.handles.delivered(fh, len(data))  # the reader gets the rest whole: only the length is kept
            return data[offset:] if offset else data
        try:
            data = self.handles.keep(fh, data, end)
        except HandlesFull as e:
            self._full_warnings.warning("full", "%s: refusing a partial read of %s by pid %d (ENOMEM)", e,
                                        node.path, pid)
            raise FsError(errno.ENOMEM, str(e)) from None
        return data[offset:end]

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

    def readdir(self, ino: int, offset: int, pid: int = 0) -> list[tuple[str, int, int, int]]:
        """Entries from index `offset` on, as (name, ino, d_type, next_offset); "." and ".." first. In a directory
        view: its registry files, then the host's entries that `pid` sees, by name (a stable order, so that a
        listing resumed at an offset, possibly by another worker, continues where it stopped)."""
        node = self.tree.node(ino)
        if not node.is_dir:
            raise FsError(errno.ENOTDIR, node.path)
        parent = self.tree.parent_of(node)
        entries: list[tuple[str, int, int]] = [(".", node.ino, DT_DIR), ("..", parent.ino, DT_DIR)]
        for name in node.children:
            child = self.tree.child(ino, name)
            entries.append((name, child.ino, DT_DIR if child.is_dir else DT_REG))
        if node.tree is not None:
            self._check_visible(node, pid)
            try:
                host = self._host(node).listdir(node.rel)
            except OSError as e:
                if node.passthrough or e.errno != errno.ENOENT:
                    raise FsError(e.errno or errno.EIO, node.path) from None
                host = []
            static = set(node.children)
            names = [n for n, _ in host if n not in static]
            hidden = self.renderer.hidden(node.tree, pid, names) if not node.rel else frozenset()
            for name, mode in sorted(host):
                if name in static or name in hidden:
                    continue
                child = self.tree.passthrough(node, name, mode)
                entries.append((name, child.ino, _DTYPE.get(mode, 0)))
        return [(n, i, t, k + 1) for k, (n, i, t) in enumerate(entries) if k >= offset]
