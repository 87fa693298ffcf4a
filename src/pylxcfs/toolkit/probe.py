"""Is the daemon serving? Answered without ever letting THIS process touch the FUSE mount.

1. Mount presence comes from /proc/self/mountinfo text (stat() of a FUSE mount point asks the daemon: hangs when it
   is SIGSTOPped, toolkit.md §3.4).
2. The read probe runs in a forked child killed at the deadline (a FUSE wait is killable): ENOTCONN means the daemon is
   gone with its mount left behind (dead); no answer before the deadline means hung (stopped or wedged).
"""

from __future__ import annotations

import enum
import errno
import os
import posixpath
import time
from dataclasses import dataclass
from typing import Any

from pylxcfs import forkjob
from pylxcfs.fuse.mountpoint import canonical, mount_at
from pylxcfs.parse.mountinfo import Mount, top_mount_at
from pylxcfs.views.registry import VIEW_PATHS


class Health(enum.IntEnum):
    """check-lxcfs exit codes (documented in --help)."""

    SERVING = 0
    ABSENT = 1  # nothing (or not a FUSE filesystem) mounted at the lxcfs dir
    HUNG = 4  # mounted, but no answer within the deadline (SIGSTOPped or wedged daemon)
    DEAD = 5  # mounted, but the daemon is gone (ENOTCONN): a stale mount
    ERROR = 6  # mounted and answering, but with an error (EIO, EACCES...): alive, so never detached as stale


@dataclass(frozen=True)
class ProbeResult:
    health: Health
    detail: str
    elapsed_s: float


def canonical_dir(path: str) -> str:
    """Absolute, normalised lxcfs dir. Symlinks are resolved in the PARENT only: resolving the dir itself would
    lstat() the FUSE mount root (a dead or hung one would fail or block)."""
    return canonical(path)


def daemon_mount(lxcfs_dir: str, mounts: list[Mount] | None = None) -> Mount | None:
    """The FUSE mount on top of lxcfs_dir in our namespace, or None."""
    top = mount_at(lxcfs_dir) if mounts is None else top_mount_at(mounts, lxcfs_dir)
    return top if top is not None and top.is_fuse else None


def _read_probe(lxcfs_dir: str) -> dict[str, Any]:
    try:
        os.listdir(lxcfs_dir)
        for view in VIEW_PATHS:
            try:
                with open(posixpath.join(lxcfs_dir, view), "rb") as f:
                    f.read(4096)
                return {"state": "serving", "detail": f"read {view}"}
            except FileNotFoundError:
                continue
        return {"state": "serving", "detail": "mounted, but serves none of our files"}
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            return {"state": "dead", "detail": f"{exc.strerror} (daemon gone, stale mount)"}
        return {"state": "error", "detail": str(exc)}


def probe(lxcfs_dir: str, timeout_s: float = 2.0) -> ProbeResult:
    start = time.monotonic()
    lxcfs_dir = canonical_dir(lxcfs_dir)
    m = daemon_mount(lxcfs_dir)
    if m is None:
        return ProbeResult(Health.ABSENT, f"nothing is mounted at {lxcfs_dir}", time.monotonic() - start)
    r = forkjob.run_one("probe", lambda: _read_probe(lxcfs_dir), timeout_s)
    elapsed = time.monotonic() - start
    if r.timed_out:
        return ProbeResult(Health.HUNG, f"{m.fstype} at {lxcfs_dir} did not answer within {timeout_s:g}s "
                                        "(daemon stopped or hung)", elapsed)
    return classify(r.ok, r.data, r.error, f"{m.fstype} at {lxcfs_dir}", elapsed)


def classify(ok: bool, data: dict[str, Any], error: str, where: str, elapsed: float) -> ProbeResult:
    """The probe worker's answer as a Health. Only ENOTCONN is DEAD: a daemon that answers, even with an error, is
    alive (prestart must never detach its mount), and a worker that died without an answer proves nothing either."""
    state = data.get("state") if ok else "error"
    detail = str(data.get("detail") or error)
    if state == "serving":
        return ProbeResult(Health.SERVING, f"{where}: {detail}", elapsed)
    if state == "dead":
        return ProbeResult(Health.DEAD, f"{where}: {detail}", elapsed)
    return ProbeResult(Health.ERROR, f"{where} answers with an error: {detail}", elapsed)
