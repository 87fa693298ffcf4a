"""Background loadavg sampler (LXCFS's load daemon, spec §6.8), run by Renderer.start() with `-l`.

Every 5 s (minus the pass's own duration) it visits the cgroups some container has read /proc/loadavg
from (views/loadavg.py registers them), counts the threads in the cgroup and up to 3 levels of
sub-cgroups (v1 `tasks`, v2 `cgroup.threads`: both list tids, so no /proc/<pid>/task walk is needed),
reads each thread's state letter from /proc/<tid>/stat (R and D count as running, as in the kernel's
nr_active), and steps the kernel EWMA. A cgroup that is gone or empty is pruned. All of this is off the
request path; the view only formats the numbers.
Cost: one cgroup file plus one small stat read per thread; about 10 us per one-thread cgroup here, so
1000 such cgroups cost ~10 ms per 5 s (0.2% of a core).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from pylxcfs.context import ViewEnv
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.views.loadavg import EXP, LoadavgState, calc_load, state_of

log = logging.getLogger(__name__)

INTERVAL_S = 5.0
DEPTH = 3  # sub-cgroup levels below the container's cgroup (LXCFS: 3)


def _tids(cgdir: str, v2: bool, depth: int = DEPTH) -> list[int] | None:
    """Thread ids in cgdir and its sub-cgroups down to `depth` levels; None if the cgroup is gone."""
    name = "cgroup.threads" if v2 else "tasks"
    try:
        data = read_bytes(f"{cgdir}/{name}")
    except FileNotFoundError:
        return None
    except OSError:
        return []
    out = [int(x) for x in data.split()]
    if depth > 0:
        try:
            with os.scandir(cgdir) as it:
                subs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            subs = []
        for s in subs:
            more = _tids(s, v2, depth - 1)
            if more:
                out.extend(more)
    return out


def sample_cgroup(root: HostRoot, cgdir: str, v2: bool) -> tuple[int, int, int] | None:
    """(running, total, last_pid) for one cgroup; None if it is gone or has no tasks."""
    tids = _tids(cgdir, v2)
    if not tids:
        return None
    running = 0
    for tid in tids:
        try:
            data = read_bytes(root.proc_path(f"{tid}/stat"))
        except OSError:
            continue  # exited since the list was read
        end = data.rfind(b")")
        if end >= 0 and data[end + 2 : end + 3] in (b"R", b"D"):
            running += 1
    return running, len(tids), max(tids)


def sample_once(root: HostRoot, st: LoadavgState) -> None:
    """One pass over every registered cgroup."""
    with st.lock:
        items = list(st.nodes.items())
    for key, node in items:
        res = sample_cgroup(root, node.cg.path, node.cg.v2)
        with st.lock:
            if res is None:
                st.nodes.pop(key, None)
                continue
            running, total, last_pid = res
            node.avenrun = [calc_load(a, running, e) for a, e in zip(node.avenrun, EXP, strict=True)]
            node.running, node.total, node.last_pid = running, total, last_pid


class LoadavgSampler:
    """The daemon thread: sample_once every INTERVAL_S until stop()."""

    def __init__(self, root: HostRoot, env: ViewEnv, interval_s: float = INTERVAL_S) -> None:
        self.root = root
        self.state = state_of(env)
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pylxcfs-loadavg", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and join the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            try:
                sample_once(self.root, self.state)
            except Exception:  # the sampler must survive anything one cgroup throws at it
                log.warning("loadavg sampler pass failed", exc_info=True)
            if self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - t0))):
                return
