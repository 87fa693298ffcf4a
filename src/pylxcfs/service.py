"""The binding-neutral heart of the daemon: (virtual path, caller pid) -> the bytes that caller reads.

The FUSE front-ends (fuse/) call only this. It resolves the caller's container, gathers a snapshot,
renders the view, and on any failure serves the host file unchanged with one log line (LXCFS
behaviour). It never raises for a known path. It does not know about FUSE.
"""

from __future__ import annotations

import logging

from pylxcfs.context import ViewOptions
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.views.registry import VIEW_PATHS

__all__ = ["Renderer", "ViewOptions"]

log = logging.getLogger(__name__)


class Renderer:
    """Renders virtual files for callers. STUB: serves host files until the views land."""

    def __init__(self, root: HostRoot, opts: ViewOptions) -> None:
        self.root = root
        self.opts = opts

    def paths(self) -> tuple[str, ...]:
        """Every virtual file path ("proc/meminfo", ...)."""
        return VIEW_PATHS

    def host_bytes(self, path: str) -> bytes:
        """The host's own file for a virtual path (the fallback content)."""
        top, _, rest = path.partition("/")
        base = self.root.proc if top == "proc" else self.root.sys
        return read_bytes(f"{base}/{rest}")

    def render(self, path: str, caller_pid: int) -> bytes:
        """What `caller_pid` should read at `path`; host bytes on any failure. Never raises for known paths."""
        try:
            return self.host_bytes(path)
        except OSError as e:
            log.warning("%s: host file unreadable for pid %d: %s", path, caller_pid, e)
            return b""

    def start(self) -> None:
        """Start background work (the loadavg sampler); call in the serving process, after any fork."""

    def close(self) -> None:
        """Stop background work."""
