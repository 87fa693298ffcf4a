"""The daemon's status directory: small JSON snapshots that `pylxcfs status` and the metrics exporter read.

Layout (next to the pidfile: /run/pylxcfs.pid -> /run/pylxcfs.status/):
  supervisor.json     written by the supervisor about once a second (mount, FUSE features, workers, restarts)
  worker-<pid>.json   written by each serving process about once a second (stats.Stats.snapshot + identity)

Every file is written to a temp name and renamed, so a reader sees a whole snapshot or the previous one,
never half of one. Readers never talk to the daemon and never touch its FUSE mount: a stopped (SIGSTOP)
or wedged daemon only makes the snapshots age, which is how status tells "hung" from "serving". The
directory is on tmpfs (/run), so reading it cannot block on a slow disk either.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

log = logging.getLogger(__name__)

PUBLISH_INTERVAL_S = 1.0
PRUNE_INTERVAL_S = 5.0
SUPERVISOR_FILE = "supervisor.json"
WORKER_PREFIX = "worker-"
MAX_SNAPSHOT_BYTES = 16 << 20  # a reader refuses anything bigger (the directory is root's, but be safe)
KEEP_EXITED_WORKERS = 32  # snapshots of exited workers kept (their counts stay in the totals); older ones go

_TMP_SEQ = itertools.count()  # next() is atomic under the GIL: threads of one process never share a name
_SEPARATORS = (",", ":")


class JsonArray:
    """A list in a snapshot that is written item by item: `items()` yields JSON-able items, each encoded and
    written before the next is made. A worker's snapshot with 1000 containers is about 430 KB of JSON; built as
    one dict tree and one string it took 4.7 MB for a moment, once a second, and left each worker's heap 3.5 MB
    bigger for good (freed small objects stay in the interpreter's arenas); streamed, the peak is one item."""

    __slots__ = ("items",)

    def __init__(self, items: Callable[[], Iterable[Any]]) -> None:
        self.items = items


def dump(data: dict[str, Any], f: TextIO) -> None:
    """json.dump of `data` (compact), with each JsonArray value streamed (see JsonArray)."""
    streamed = {k: v for k, v in data.items() if isinstance(v, JsonArray)}
    if not streamed:
        json.dump(data, f, separators=_SEPARATORS)
        return
    head = json.dumps({k: v for k, v in data.items() if k not in streamed}, separators=_SEPARATORS)
    f.write(head[:-1])
    sep = "," if len(head) > 2 else ""
    for key, arr in streamed.items():
        f.write(f"{sep}{json.dumps(key)}:[")
        first = True
        for item in arr.items():
            f.write(json.dumps(item, separators=_SEPARATORS) if first else
                    "," + json.dumps(item, separators=_SEPARATORS))
            first = False
        f.write("]")
        sep = ","
    f.write("}")


def status_dir_for(pidfile: str) -> str:
    """The status directory belonging to a pidfile: <dir>/<name without .pid>.status."""
    pidfile = os.path.abspath(pidfile)
    base = os.path.basename(pidfile)
    stem = base[:-4] if base.endswith(".pid") and len(base) > 4 else base
    return os.path.join(os.path.dirname(pidfile), stem + ".status")


def write_json_atomic(directory: str, name: str, data: dict[str, Any]) -> None:
    """Write <directory>/<name> atomically (temp file + rename), mode 0644; JsonArray values are streamed."""
    # Not tempfile.mkstemp: tempfile imports random, shutil, bz2 and lzma, about 1.7 MB of every process of the
    # daemon, for a name that the pid and a counter make unique here (O_EXCL: never follows what is already there).
    tmp = os.path.join(directory, f".tmp-{name}.{os.getpid()}.{next(_TMP_SEQ)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except FileExistsError:  # left by a killed process that had our pid: ours now
        os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "w") as f:
            dump(data, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, os.path.join(directory, name))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def prepare(directory: str) -> None:
    """Create the directory (0755) and remove snapshots a previous daemon left (their pids are gone or
    belong to someone else now)."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    for name in os.listdir(directory):
        if name.endswith(".json") or name.startswith(".tmp-"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(directory, name))


def remove(directory: str, name: str) -> None:
    """Remove one snapshot (a clean exit)."""
    with contextlib.suppress(OSError):
        os.unlink(os.path.join(directory, name))


def read_json(path: str) -> dict[str, Any] | None:
    """One snapshot, or None if missing, too big or not a JSON object."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SNAPSHOT_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_SNAPSHOT_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_all(directory: str) -> tuple[dict[str, Any] | None, dict[int, dict[str, Any]]]:
    """(supervisor snapshot or None, {worker pid: snapshot}). Each snapshot gets "_mtime" (its file's
    modification time, the age of the information)."""
    sup = None
    workers: dict[int, dict[str, Any]] = {}
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return None, {}
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = os.path.join(directory, name)
        data = read_json(path)
        if data is None:
            continue
        with contextlib.suppress(OSError):
            data["_mtime"] = os.stat(path).st_mtime
        if name == SUPERVISOR_FILE:
            sup = data
        elif name.startswith(WORKER_PREFIX) and name[len(WORKER_PREFIX):-5].isdigit():
            workers[int(name[len(WORKER_PREFIX):-5])] = data
    return sup, workers


class Publisher:
    """A daemon thread that writes `make()` to <directory>/<name> every `interval_s` and runs `prune()`
    every PRUNE_INTERVAL_S. Errors are logged once and retried (a full /run must not stop serving)."""

    def __init__(self, directory: str, name: str, make: Callable[[], dict[str, Any]],
                 prune: Callable[[], object] | None = None, interval_s: float = PUBLISH_INTERVAL_S) -> None:
        self.directory = directory
        self.name = name
        self.make = make
        self.prune = prune
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failed = False

    def publish(self) -> None:
        """Write one snapshot now."""
        try:
            write_json_atomic(self.directory, self.name, self.make())
            self._failed = False
        except Exception as e:
            if not self._failed:
                log.warning("cannot publish status to %s/%s: %s", self.directory, self.name, e)
            self._failed = True

    def _run(self) -> None:
        last_prune = time.monotonic()
        while not self._stop.is_set():
            if self.prune is not None and time.monotonic() - last_prune >= PRUNE_INTERVAL_S:
                last_prune = time.monotonic()
                try:
                    self.prune()
                except Exception as e:  # pruning is best effort
                    log.debug("status prune failed: %s", e)
            self.publish()
            self._stop.wait(self.interval_s)

    def start(self) -> None:
        """Start publishing (call in the process that serves, after any fork)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="status-publisher", daemon=True)
            self._thread.start()

    def stop(self, final: bool = True) -> None:
        """Stop. With `final`, write one last snapshot and leave it: a retired worker's counts stay part of the
        totals (readers merge the snapshots of exited workers too); otherwise remove it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if final:
            self.publish()
        else:
            remove(self.directory, self.name)


class SupervisorStatus:
    """What the raw back-end's supervisor publishes (supervisor.json): called from its main loop with
    itself; reads only plain attributes, writes at most once per PUBLISH_INTERVAL_S."""

    def __init__(self, directory: str, backend: str = "raw") -> None:
        self.directory = directory
        self.backend = backend
        self.started = time.time()
        self._last = 0.0

    def describe(self, sup: Any) -> dict[str, Any]:
        """The snapshot of a supervisor object (fuse.supervisor.Supervisor or anything shaped like it)."""
        from pylxcfs import __version__

        init = getattr(sup, "init", None)
        workers = []
        now_ns = time.monotonic_ns()
        for w in list(getattr(sup, "workers", {}).values()):
            row: dict[str, Any] = {"pid": w.pid, "ready": bool(w.ready), "retiring": w.retiring_since is not None}
            if hasattr(w, "gen"):  # the pool's workers: generation, adopted, the request in progress
                since, _unique, pid, opcode, requests, _errors = w.snapshot()
                row.update(generation=w.gen, adopted=bool(w.adopted), requests=requests,
                           busy_s=round((now_ns - since) / 1e9, 3) if since else 0.0,
                           busy_pid=pid if since else 0, busy_opcode=opcode if since else 0)
            workers.append(row)
        fuse = None
        if init is not None:
            fuse = {"protocol": f"7.{init.minor}", "kernel_flags": init.kernel_flags, "flags": init.flags,
                    "max_write": init.max_write, "resend": bool(init.kernel_can_resend),
                    "resend_ok": bool(getattr(sup, "_resend_ok", True))}
        out = {"pid": os.getpid(), "version": __version__, "backend": self.backend, "started": self.started,
               "time": time.time(), "mountpoint": getattr(sup, "mnt", None), "fuse": fuse, "workers": workers,
               "worker_crashes": int(getattr(sup, "crashes", 0)), "kernel": os.uname().release}
        if isinstance(getattr(sup, "size", None), int):
            out["pool_size"] = sup.size
        for extra in ("stuck_requests", "stuck_kills", "adopted"):  # pool/watchdog counters where present
            v = getattr(sup, extra, None)
            if isinstance(v, int):
                out[extra] = v
        return out

    def tick(self, sup: Any, force: bool = False) -> None:
        """Publish if a second has passed (or `force`); never raises."""
        now = time.monotonic()
        if not force and now - self._last < PUBLISH_INTERVAL_S:
            return
        self._last = now
        try:
            write_json_atomic(self.directory, SUPERVISOR_FILE, self.describe(sup))
            self._trim(set(getattr(sup, "workers", {})))
        except Exception as e:
            log.debug("cannot publish supervisor status: %s", e)

    def _trim(self, live: set[int]) -> None:
        """Bound the snapshots of exited workers (a crash loop must not fill /run)."""
        exited = []
        for name in os.listdir(self.directory):
            num = name[len(WORKER_PREFIX):-5]
            if name.startswith(WORKER_PREFIX) and name.endswith(".json") and num.isdigit() and int(num) not in live:
                with contextlib.suppress(OSError):
                    exited.append((os.stat(os.path.join(self.directory, name)).st_mtime, name))
        for _, name in sorted(exited)[:-KEEP_EXITED_WORKERS]:
            remove(self.directory, name)

    def close(self) -> None:
        """A clean stop: remove the snapshot."""
        remove(self.directory, SUPERVISOR_FILE)
