"""The hook's registry of containers set up for lxcfs: one small JSON record per container, `<dir>/<id>.json`,
written atomically (temp file + rename), so `remount --all` / `umount --all` know which containers opted in
(toolkit.md §6.12 decision 3). The id becomes a file name only after valid_container_id() accepted it.
Stale records (pid gone, or pid reused: start time changed) are pruned by the toolkit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from pylxcfs.ct.apply import proc_start_time
from pylxcfs.ct.oci import valid_container_id
from pylxcfs.errors import QuietError
from pylxcfs.toolkit import safefile

DEFAULT_REGISTRY_DIR = "/run/pylxcfs/containers"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    id: str
    pid: int | None
    start_time: int | None
    rootfs: str | None
    bundle: str | None
    name: str | None
    lxcfs_dir: str
    stage: str
    registered_at: float

    def alive(self) -> bool:
        """The recorded init still runs (same start time): the pid was not reused."""
        if not self.pid or self.pid <= 1:
            return False
        st = proc_start_time(self.pid)
        return st is not None and (self.start_time is None or st == self.start_time)


def registry_dir(flag: str | None = None) -> str:
    return flag or os.environ.get("PYLXCFS_REGISTRY_DIR") or DEFAULT_REGISTRY_DIR


def write(directory: str, rec: Record) -> str:
    """Atomically write <directory>/<id>.json (mode 0600; the directory 0700). Raises ValueError on a bad id."""
    if not valid_container_id(rec.id):
        raise ValueError(f"refusing to register container id {rec.id!r}: not a safe file name")
    os.makedirs(directory, mode=0o700, exist_ok=True)
    final = os.path.join(directory, rec.id + ".json")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(rec), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return final


def _record(data: dict[str, Any]) -> Record | None:
    try:
        rec = Record(str(data["id"]), data.get("pid"), data.get("start_time"), data.get("rootfs"),
                     data.get("bundle"), data.get("name"), str(data.get("lxcfs_dir") or ""),
                     str(data.get("stage") or ""), float(data.get("registered_at") or 0))
    except (KeyError, TypeError, ValueError):
        return None
    if not valid_container_id(rec.id) or not (rec.pid is None or isinstance(rec.pid, int)):
        return None
    return rec


def load(directory: str) -> list[Record]:
    """Every readable record; broken files are logged and ignored (never trusted)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        try:
            data = safefile.read_json(os.path.join(directory, name), 1 << 20, 5.0)
        except (OSError, QuietError, UnicodeDecodeError) as exc:
            log.warning("ignoring unreadable registry record %s: %s", name, exc)
            continue
        rec = _record(data) if isinstance(data, dict) else None
        if rec is None or name != rec.id + ".json":
            log.warning("ignoring malformed registry record %s", name)
            continue
        out.append(rec)
    return out


def remove(directory: str, cid: str) -> None:
    if valid_container_id(cid):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, cid + ".json"))


def prune(directory: str, records: list[Record], min_age_s: float = 60.0) -> list[Record]:
    """Drop records whose container is gone; return the live ones. Records younger than `min_age_s` without a pid
    are kept (a createContainer hook may not know the host pid)."""
    live = []
    now = time.time()
    for rec in records:
        if rec.alive() or (rec.pid is None and now - rec.registered_at < min_age_s):
            live.append(rec)
        else:
            log.info("pruning stale registry record", extra={"kv": {"container": rec.id, "pid": rec.pid}})
            remove(directory, rec.id)
    return live
