"""The mfusepy back-end (`--fuse-backend mfusepy`): one libfuse3 process, no supervisor.

Role: adapt ops.Operations (inode based, binding-neutral) to mfusepy's path-based high-level API,
as fuse-bindings.md §9 measured: single-threaded (`nothreads`), `raw_fi` so
open() can set direct_io, entry/attr timeouts 0.5 s (libfuse's high-level API has one entry timeout for all
entries, so the per-caller cpuN directories of /sys/devices/system/cpu may stay visible to another caller's
stat() for up to 0.5 s after a lookup that found them; listings are always per caller; the raw back-end,
the default, answers those lookups with timeout 0), `auto_unmount` (libfuse's fusermount3 unmounts after a
SIGKILL) and, because fusermount3 sometimes does not, our own watchdog as the raw back-end has it
(fuse/watchdog.py; why: serve_mfusepy). It cannot survive its own crash or reload without a remount (libfuse
answers EIO until it has seen INIT); the raw back-end can. This is the only module that imports mfusepy.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from typing import Any

from pylxcfs.fuse import mountpoint
from pylxcfs.fuse.config import DaemonConfig
from pylxcfs.fuse.ops import FsError, Node, Operations
from pylxcfs.fuse.watchdog import start_watchdog

log = logging.getLogger(__name__)


def _load_mfusepy() -> Any:
    # mfusepy prefers find_library('fuse') (libfuse2) when both are installed (fuse-bindings.md §1).
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    import mfusepy

    if getattr(mfusepy, "fuse_version_major", 3) != 3:
        raise RuntimeError(f"mfusepy loaded libfuse {mfusepy.fuse_version_major}, need libfuse3")
    return mfusepy


class MfuseAdapter:
    """mfusepy Operations over ops.Operations (paths -> inodes; FsError -> FuseOSError)."""

    use_ns = True

    def __init__(self, ops: Operations, mfusepy: Any, on_init: Callable[[], None] | None = None) -> None:
        self.ops = ops
        self._m = mfusepy
        self._on_init = on_init

    def _err(self, e: FsError) -> Exception:
        return self._m.FuseOSError(e.errno)  # type: ignore[no-any-return]

    def init(self, path: str) -> None:
        """Called by libfuse once mounted and INIT done."""
        if self._on_init is not None:
            self._on_init()

    def getattr(self, path: str, fh: Any = None) -> dict[str, int]:
        """stat of a node: caller-independent (see ops.Node.attr)."""
        try:
            a = self.ops.attr_of(self._node(path))
        except FsError as e:
            raise self._err(e) from None
        now = self._now()
        return {"st_ino": a.ino, "st_mode": a.mode, "st_nlink": a.nlink, "st_size": a.size, "st_uid": 0,
                "st_gid": 0, "st_atime": now, "st_mtime": now, "st_ctime": now}

    def _node(self, path: str) -> Node:
        _uid, _gid, pid = self._m.fuse_get_context()
        return self.ops.resolve_path(path, pid)

    def readlink(self, path: str) -> str:
        """A passthrough symlink's host target."""
        try:
            return self.ops.readlink(self._node(path).ino)
        except FsError as e:
            raise self._err(e) from None

    @staticmethod
    def _now() -> int:
        import time

        return time.time_ns()

    def access(self, path: str, amode: int) -> int:
        """Write access refused."""
        try:
            self.ops.access(self._node(path).ino, amode)
        except FsError as e:
            raise self._err(e) from None
        return 0

    def open(self, path: str, fi: Any) -> int:
        """A new handle (the first read at offset 0 renders); direct_io on, keep_cache off (docs/design-fuse.md)."""
        _uid, _gid, pid = self._m.fuse_get_context()
        try:
            fi.fh = self.ops.open(self.ops.resolve_path(path, pid).ino, fi.flags, pid)
        except FsError as e:
            raise self._err(e) from None
        fi.direct_io = 1
        fi.keep_cache = 0
        return 0

    def read(self, path: str | None, size: int, offset: int, fi: Any) -> bytes:
        """Offset 0 renders for the reader, later offsets continue that render (ops.Operations.read); page-cache
        fills are refused (the splice guard, docs/design-fuse.md)."""
        _uid, _gid, pid = self._m.fuse_get_context()
        if not fi.lock_owner:
            # libfuse copies fuse_read_in.lock_owner into fi (do_read, proto >= 7.9) whatever read_flags says: a
            # read(2) through direct_io carries the kernel's hash of current->files (fuse_direct_io), never 0; a
            # page-cache fill (sendfile/splice/mmap, kzalloc'd args) carries 0. See fuse/wire.py Dispatcher._read.
            raise self._m.FuseOSError(errno.EINVAL)
        try:
            ino = self.ops.resolve_path(path, pid).ino if path else 0
            return self.ops.read(ino, fi.fh, offset, size, pid)
        except FsError as e:
            raise self._err(e) from None

    def release(self, path: str | None, fi: Any) -> int:
        """Drop the handle."""
        self.ops.release(fi.fh)
        return 0

    def flush(self, path: str | None, fi: Any) -> int:
        """Nothing to flush."""
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        """Names in a directory, with . and .."""
        try:
            _uid, _gid, pid = self._m.fuse_get_context()
            return [name for name, *_ in self.ops.readdir(self.ops.resolve_path(path, pid).ino, 0, pid)]
        except FsError as e:
            raise self._err(e) from None

    def statfs(self, path: str) -> dict[str, int]:
        """An empty filesystem."""
        return {"f_bsize": 512, "f_frsize": 512, "f_namemax": 255}


def serve_mfusepy(mnt: str, cfg: DaemonConfig, extra_options: str, on_ready: Callable[[], None]) -> int:
    """Mount with mfusepy and serve until SIGTERM/SIGINT/SIGHUP or unmount; returns the exit code."""
    mfusepy = _load_mfusepy()
    renderer = cfg.make_renderer()
    ops = Operations(renderer)
    # auto_unmount alone leaves a stale mount after a SIGKILL about one time in six on a loaded machine: the
    # exiting process releases fusermount3's socket before /dev/fuse, fusermount3 wakes, its open() of the mount
    # point queues an OPENDIR that the connection's abort then ends with ECONNABORTED, not ENOTCONN, and
    # fusermount3 exits without unmounting (util/fusermount.c should_auto_unmount). Our watchdog, forked before
    # libfuse opens /dev/fuse (it never holds the connection), unmounts whatever fusermount3 left once we are
    # gone, if it is still this mount (same device).
    watchdog_w = start_watchdog(mnt)

    def on_init() -> None:
        entry = mountpoint.mount_at(mnt)
        if entry is not None:
            os.write(watchdog_w, f"dev={entry.dev}\n".encode())
        renderer.start()
        on_ready()

    kwargs: dict[str, Any] = {}
    for opt in filter(None, (o.strip() for o in extra_options.split(","))):
        key, _, val = opt.partition("=")
        if key in ("allow_other", "direct_io", "nonempty", "entry_timeout", "attr_timeout"):
            continue  # forced below, as lxcfs does (virtual-files.md §2.2)
        kwargs[key] = val if val else True
    try:
        mfusepy.FUSE(MfuseAdapter(ops, mfusepy, on_init), mnt, foreground=True, nothreads=True, raw_fi=True,
                     allow_other=True, fsname="lxcfs", subtype="lxcfs", entry_timeout=0.5, attr_timeout=0.5,
                     auto_unmount=True, **kwargs)
    except RuntimeError as e:
        # mfusepy raises RuntimeError(8) when libfuse's loop ended on a signal: a normal exit
        # (fuse-bindings.md §7).
        if e.args != (8,):
            raise
    except BaseException:
        os.close(watchdog_w)  # without "clean": the watchdog unmounts the mount if it is still there
        raise
    finally:
        renderer.close()
    # libfuse has unmounted (fuse_teardown) before FUSE() returns
    os.write(watchdog_w, b"clean\n")
    os.close(watchdog_w)
    log.info("mfusepy back-end: unmounted %s", mnt)
    return 0


__all__ = ["MfuseAdapter", "serve_mfusepy"]
