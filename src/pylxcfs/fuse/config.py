"""The daemon's settings as one serialisable record, so a worker exec'd by the supervisor rebuilds
exactly the Renderer the command line asked for.

Role: glue between cli.py and the serving processes. It holds data and builds the Renderer; it
makes no decisions about content.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pylxcfs.context import ViewOptions

if TYPE_CHECKING:
    from pylxcfs.hostfs import HostRoot
    from pylxcfs.service import Renderer


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """What a serving process needs: the host root (None = the live host), view options, log level."""

    host_root: str | None = None
    opts: ViewOptions = field(default_factory=ViewOptions)
    debug: bool = False
    status_dir: str | None = None  # where serving processes publish their stats (statusdir.py); None: nowhere
    spin_us: int = 50  # a worker that runs out of requests polls this long before it sleeps (fuse/worker.py)

    def root(self) -> HostRoot:
        """The HostRoot to read from."""
        from pylxcfs.hostfs import HostRoot  # imported where it is used: the supervisor never renders

        return HostRoot() if self.host_root is None else HostRoot.from_dir(self.host_root)

    def make_renderer(self, shared_fd: int = -1) -> Renderer:
        """A fresh Renderer (call .start() in the serving process); `shared_fd`: the pool's shared state table
        (sharedtable.py), -1 for a private one."""
        from pylxcfs.service import Renderer

        return Renderer(self.root(), self.opts, status_dir=self.status_dir, shared_fd=shared_fd)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (the worker's --config)."""
        return {"host_root": self.host_root, "opts": asdict(self.opts), "debug": self.debug,
                "status_dir": self.status_dir, "spin_us": self.spin_us}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DaemonConfig:
        """Inverse of to_json; unknown option names are ignored (a newer supervisor, an older worker)."""
        known = set(ViewOptions.__dataclass_fields__)
        opts = ViewOptions(**{k: bool(v) for k, v in dict(d.get("opts") or {}).items() if k in known})
        sdir = d.get("status_dir")
        spin = d.get("spin_us", 50)
        return cls(host_root=d.get("host_root"), opts=opts, debug=bool(d.get("debug", False)),
                   status_dir=sdir if isinstance(sdir, str) else None,
                   spin_us=spin if isinstance(spin, int) and 0 <= spin <= 10_000 else 50)
