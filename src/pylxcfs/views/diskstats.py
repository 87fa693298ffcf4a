"""/proc/diskstats for the caller's container (controller: blkio on v1, io on v2).

Rows: the host's /proc/diskstats lines, in host order, for the disks the container can see (a node in
its /dev, or the disk holding its root filesystem, named `sda`), whether or not it has done I/O on them:
a disk the cgroup has no statistics for yet (a fresh container; on a v1 blk-mq kernel, any disk without a
throttle rule or BFQ) is listed with zero counters, as the kernel lists an idle disk. Everything else is
left out (seed: "a device with no name in the container is left out"). Counters come from
cgroups/blkio.py:
  reads, writes, discards            = I/Os serviced (v1 Read/Write/Discard; v2 rios/wios/dios)
  *_merged                           = v1 io_merged (CFQ or debug BFQ), else 0
  sectors read/written/discarded     = bytes / 512
  time reading/writing/discarding    = (service time + wait time) / 1e6 ms (CFQ / debug BFQ), else 0
  in flight                          = 0 (no cgroup exposes it)
  time doing I/O (io_ticks)          = service time Total / 1e6 ms (as C lxcfs), else 0
  weighted time (time_in_queue)      = time reading + writing + discarding: the kernel's definition
                                       since 5.0 (block/genhd.c sums the per-op nsecs); C lxcfs prints 0
  flushes, time flushing             = 0 (no cgroup counts flushes)
Each row has as many counters as the host's own line (11, 15 or 17; 4 for pre-2.6.25 partition rows),
so a reader sees the column layout its kernel would print. Unlike C lxcfs, which lists only devices with
statistics, a visible disk is listed even with all counters zero (it exists in the container; iostat and
psutil show it idle). Partition nodes are not listed (cgroup statistics are per disk, so their rows could
only ever be zeros), except that a root filesystem on a partition is shown as `sda` with its disk's
counters.

`render_diskstats` is pure; `produce` gathers through env.root and raises (-> host file) when the
container has no blkio/io cgroup or no statistics files.

Speed (the same on every host root):
- the container's counters are read from the cgroup on EVERY open (cached descriptors, pread at 0): never stale;
- the host's /proc/diskstats is used only for its device list, order and column count (render_diskstats
  ignores the host's counters), so its parsed lines are kept for HOST_LAYOUT_TTL_S (1 s): a disk hot-plugged
  or removed on the host shows up in containers within 1 s. Saves the host read (~9 us) and parse (~6 us);
- a statistics file that does not exist (e.g. CFQ's blkio.io_serviced_recursive on blk-mq) is remembered as
  absent for MISSING_TTL_S (1 s) per path instead of failing an open() on every read (~4 us); files appear
  only when an I/O scheduler with a blkcg policy is loaded (modprobe bfq), which then shows within 1 s.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from pylxcfs.cgroups.blkio import IoCounters, Reader, io_counters
from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.devnames import ContainerDevices, cache_from_states
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.parse.diskstats import DevT, DiskstatsLine, parse_diskstats
from pylxcfs.views.readers import reader

ROOT_NAME = "sda"
SECTOR_BYTES = 512  # /proc/diskstats sectors are always 512 bytes (iostats.rst), whatever the device
NS_PER_MS = 1_000_000




LAYOUT_STATE_KEY = "disks.layout"  # ViewEnv.states entry: HostLayoutCache (live hosts only)
MISSING_STATE_KEY = "disks.missing"  # ViewEnv.states entry: MissingFileCache (live hosts only)
HOST_LAYOUT_TTL_S = 1.0
MISSING_TTL_S = 1.0


class MissingFileCache:
    """Wraps a Reader: a path whose read raised FileNotFoundError while its directory exists raises it again,
    without a syscall, for `ttl_s`; existing files are always read through (their content is never cached).
    Bounded."""

    def __init__(self, read: Reader, ttl_s: float = MISSING_TTL_S, max_paths: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read = read
        self.ttl_s = ttl_s
        self.max_paths = max_paths
        self._clock = clock
        self._missing: dict[str, float] = {}  # path -> clock() when it was found missing

    def read(self, path: str) -> bytes:
        """Like the wrapped reader; FileNotFoundError for a path found missing less than ttl_s ago."""
        since = self._missing.get(path)
        if since is not None:
            if self._clock() - since < self.ttl_s:
                raise FileNotFoundError(2, "No such file or directory (cached)", path)
            del self._missing[path]
        try:
            return self._read(path)
        except FileNotFoundError:
            # Only a file missing from an EXISTING directory is remembered (a statistics file this kernel does
            # not provide); a removed cgroup is not, so one recreated at the same path (a container restart)
            # is read at once.
            if os.path.isdir(os.path.dirname(path)):
                if len(self._missing) >= self.max_paths:
                    self._missing.clear()
                self._missing[path] = self._clock()
            raise


class HostLayoutCache:
    """The host's /proc/diskstats text, re-read at most every `ttl_s`, and its lines parsed per `wanted` set
    (parse_diskstats(text, wanted), memoized until the next re-read). Only the device list, order and column
    count of these lines are used by render_diskstats; counters come from the cgroup on every open."""

    def __init__(self, ttl_s: float = HOST_LAYOUT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._text: str | None = None
        self._read_at = 0.0
        self._parsed: dict[frozenset[DevT], tuple[DiskstatsLine, ...]] = {}

    def lines(self, read_text: Callable[[], str], wanted: Collection[DevT]) -> tuple[DiskstatsLine, ...]:
        """parse_diskstats(host text, wanted=wanted) over a host text at most ttl_s old."""
        now = self._clock()
        if self._text is None or now - self._read_at >= self.ttl_s:
            self._text = read_text()
            self._read_at = now
            self._parsed.clear()
        key = frozenset(wanted)
        hit = self._parsed.get(key)
        if hit is None:
            hit = parse_diskstats(self._text, wanted=key)  # a ParseError propagates, as without the cache
            if len(self._parsed) < 256:
                self._parsed[key] = hit
        return hit


def _stats_reader(env: ViewEnv) -> Reader:
    """reader(env) plus the missing-file memory."""
    miss = env.states.get(MISSING_STATE_KEY)
    if not isinstance(miss, MissingFileCache):
        miss = MissingFileCache(reader(env))
        env.states[MISSING_STATE_KEY] = miss
    return miss.read


def host_lines(env: ViewEnv, read: Reader, wanted: Collection[DevT]) -> tuple[DiskstatsLine, ...]:
    """The host's diskstats lines for `wanted` devices, in host order (layout cached)."""
    path = env.root.proc_path("diskstats")
    cache = env.states.get(LAYOUT_STATE_KEY)
    if not isinstance(cache, HostLayoutCache):
        cache = HostLayoutCache()
        env.states[LAYOUT_STATE_KEY] = cache
    return cache.lines(lambda: read(path).decode("ascii", "replace"), wanted)


def diskstats_names(devs: ContainerDevices) -> dict[DevT, str]:
    """Device -> name shown in diskstats: the container's node names of whole disks, and the root's disk as
    `sda` (partition nodes are left out: cgroups count per disk)."""
    names = {d: n for d, n in devs.nodes.items() if d not in devs.partitions}
    if devs.root_disk is not None:
        names[devs.root_disk] = ROOT_NAME
    return names


def counter_fields(c: IoCounters, nfields: int) -> tuple[int, ...]:
    """The `nfields` diskstats counters (kernel order) for one device's cgroup counters."""
    rt, wt, dt = c.read_time_ns // NS_PER_MS, c.write_time_ns // NS_PER_MS, c.discard_time_ns // NS_PER_MS
    if nfields == 4:  # pre-2.6.25 partition rows: reads, sectors read, writes, sectors written
        return (c.reads, c.read_bytes // SECTOR_BYTES, c.writes, c.write_bytes // SECTOR_BYTES)
    weighted = (c.read_time_ns + c.write_time_ns + c.discard_time_ns) // NS_PER_MS
    full = (
        c.reads, c.read_merged, c.read_bytes // SECTOR_BYTES, rt,
        c.writes, c.write_merged, c.write_bytes // SECTOR_BYTES, wt,
        0, c.io_time_ns // NS_PER_MS, weighted,
        c.discards, c.discard_merged, c.discard_bytes // SECTOR_BYTES, dt,
        0, 0,  # flushes, time flushing
    )
    return full[:nfields] + (0,) * max(0, nfields - len(full))


NO_IO = IoCounters(source="none")  # a listed disk the cgroup has no statistics for: all zeros


def render_diskstats(host: Sequence[DiskstatsLine], counters: Mapping[DevT, IoCounters],
                     names: Mapping[DevT, str]) -> str:
    """The container's /proc/diskstats text (kernel line format "%4d %7d %s %lu ..."): one row per host line
    whose device is in `names`, with its counters or zeros."""
    out: list[str] = []
    for line in host:
        dev = (line.major, line.minor)
        name = names.get(dev)
        if name is None:
            continue
        c = counters.get(dev)
        n = len(line.fields)
        # Most rows of a container are disks it has a node of but did no I/O on: their zeros are made once.
        vals = _zeros(n) if c is None else " ".join(map(str, counter_fields(c, n)))
        out.append(f"{line.major:4d} {line.minor:7d} {name} {vals}\n")
    return "".join(out)


@functools.lru_cache(maxsize=64)
def _zeros(n: int) -> str:
    """The counters of a row with no I/O (n zeros), made once per column count."""
    return " ".join(map(str, counter_fields(NO_IO, n)))


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """Gather (cgroup counters, container devices, host diskstats) and render."""
    if ctx.blkio is None:
        raise CgroupUnavailable("blkio", "the container has no blkio (v1) or io (v2) cgroup")
    devs = cache_from_states(env.states).get(env.root, ctx.init_pid, ctx.init_start_ticks)
    names = diskstats_names(devs)
    # read even when nothing is visible: a broken cgroup still falls back
    counters = io_counters(ctx.blkio, _stats_reader(env))
    if not names:
        return ""
    return render_diskstats(host_lines(env, reader(env), names.keys()), counters, names)
