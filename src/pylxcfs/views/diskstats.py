"""/proc/diskstats for the caller's container (controller: blkio on v1, io on v2).

Rows: the host's /proc/diskstats lines, in host order, for devices the container can see (a node in
its /dev, or the disk holding its root filesystem, named `sda`) for which the cgroup has statistics;
everything else is left out (seed: "a device with no name in the container is left out"). Counters
come from cgroups/blkio.py:
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
so a reader sees the column layout its kernel would print. Unlike C lxcfs, a visible device whose
counters are all zero is still listed (it exists in the container; iostat shows it idle). Partitions
are never listed (cgroup statistics are per disk), except that a root filesystem on a partition is
shown as `sda` with its disk's counters.

`render_diskstats` is pure; `produce` gathers through env.root and raises (-> host file) when the
container has no blkio/io cgroup or no statistics files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pylxcfs.cgroups.blkio import IoCounters, Reader, io_counters
from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.devnames import ContainerDevices, cache_from_states
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.fdcache import FdCache
from pylxcfs.hostfs import read_bytes
from pylxcfs.parse.diskstats import DevT, DiskstatsLine, parse_diskstats

ROOT_NAME = "sda"
SECTOR_BYTES = 512  # /proc/diskstats sectors are always 512 bytes (iostats.rst), whatever the device
NS_PER_MS = 1_000_000


FD_STATE_KEY = "disks.fd"  # ViewEnv.states entry: cached descriptors shared by the diskstats and partitions views


def reader(env: ViewEnv) -> Reader:
    """Cached descriptors (pread at 0 regenerates a seq_file: fdcache.py) on a live host; plain reads on a
    fixture tree, whose regular files could be replaced under a kept descriptor."""
    if not env.root.is_real_procfs:
        return read_bytes
    cache = env.states.get(FD_STATE_KEY)
    if not isinstance(cache, FdCache):
        cache = FdCache(max_fds=256)
        env.states[FD_STATE_KEY] = cache
    return cache.read


def diskstats_names(devs: ContainerDevices) -> dict[DevT, str]:
    """Device -> name shown in diskstats: the container's node names, and the root's disk as `sda`."""
    names = dict(devs.nodes)
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


def render_diskstats(host: Sequence[DiskstatsLine], counters: Mapping[DevT, IoCounters],
                     names: Mapping[DevT, str]) -> str:
    """The container's /proc/diskstats text (kernel line format "%4d %7d %s %lu ...")."""
    out: list[str] = []
    for line in host:
        name = names.get(line.dev)
        c = counters.get(line.dev)
        if name is None or c is None:
            continue
        vals = " ".join(str(v) for v in counter_fields(c, len(line.fields)))
        out.append(f"{line.major:4d} {line.minor:7d} {name} {vals}\n")
    return "".join(out)


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """Gather (cgroup counters, container devices, host diskstats) and render."""
    if ctx.blkio is None:
        raise CgroupUnavailable("blkio", "the container has no blkio (v1) or io (v2) cgroup")
    devs = cache_from_states(env.states).get(env.root, ctx.init_pid, ctx.init_start_ticks)
    names = diskstats_names(devs)
    read = reader(env)
    counters = io_counters(ctx.blkio, read)  # read even when nothing is visible: a broken cgroup still falls back
    wanted = names.keys() & counters.keys()
    if not wanted:
        return ""  # nothing visible has statistics (e.g. no throttle rule on blk-mq): no rows, like C lxcfs
    host = parse_diskstats(read(env.root.proc_path("diskstats")).decode("ascii", "replace"), wanted=wanted)
    return render_diskstats(host, counters, names)
