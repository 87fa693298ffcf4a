"""Per-device block I/O counters of one cgroup, by meaning, over cgroup v1 blkio and v2 io.

Role: turn the cgroup's statistics files into `IoCounters` per device (MAJ:MIN); the diskstats view
renders them. This module reads files (through the CgroupDir path the resolver built under a HostRoot)
and never renders.

v1 has three families of statistics, and which ones count depends on the kernel and the I/O scheduler:
  - CFQ (`blkio.io_serviced_recursive`, `io_service_bytes_recursive`, `io_merged_recursive`,
    `io_service_time_recursive`, `io_wait_time_recursive`): what C lxcfs reads. CFQ was removed with the
    legacy block layer in Linux 5.0, so on blk-mq kernels these files do not exist.
  - BFQ (`blkio.bfq.io_serviced_recursive`, `blkio.bfq.io_service_bytes_recursive`; the time and merge
    files only with CONFIG_BFQ_CGROUP_DEBUG): they count only on devices whose scheduler is bfq.
  - blk-throttle (`blkio.throttle.io_serviced[_recursive]`, `blkio.throttle.io_service_bytes[_recursive]`):
    measured on kernel 6.18 (spec §6.9), they count a device only while the cgroup has a throttle rule
    for it (`blkio.throttle.read_bps_device`); runc sets one from linux.resources.blockIO.throttle*.
    The `_recursive` variants (Linux 4.?+) include descendant cgroups; older kernels only have the flat
    ones, which then miss I/O done in sub-cgroups.
Each family lists only the devices it accounts, so the counters of a device come from the family that
saw the most I/Os for it (ties: CFQ, then BFQ, then throttle); families are never mixed for one device.
v2 `io.stat` is hierarchical and has bytes and I/O counts for read, write and discard, no times or merges.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass

from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.hostfs import read_bytes
from pylxcfs.parse.blkio import parse_blkio_rwstat, parse_io_stat
from pylxcfs.parse.diskstats import DevT


@dataclass(frozen=True, slots=True)
class IoCounters:
    """One device's I/O done by one cgroup (and its descendants where the source is recursive).

    A counter the source does not provide is 0 (v2 and throttle have no merges or times; only CFQ and
    debug BFQ have times). `source` names the file family the numbers came from.
    """

    reads: int = 0
    read_merged: int = 0
    read_bytes: int = 0
    read_time_ns: int = 0  # service time + queue wait time (what lxcfs adds up for "time reading")
    writes: int = 0
    write_merged: int = 0
    write_bytes: int = 0
    write_time_ns: int = 0
    discards: int = 0
    discard_merged: int = 0
    discard_bytes: int = 0
    discard_time_ns: int = 0
    io_time_ns: int = 0  # service time of all I/Os ("time doing I/O"), 0 when the source has no times
    source: str = ""

    @property
    def total_ios(self) -> int:
        """Completed reads + writes + discards."""
        return self.reads + self.writes + self.discards


# (family name, file-name prefix, serviced, service_bytes, merged, service_time, wait_time); the last
# three are optional. Ordered by preference on ties.
_V1_FAMILIES: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("cfq", "blkio.", "io_serviced_recursive", "io_service_bytes_recursive", "io_merged_recursive",
     "io_service_time_recursive", "io_wait_time_recursive"),
    ("bfq", "blkio.bfq.", "io_serviced_recursive", "io_service_bytes_recursive", "io_merged_recursive",
     "io_service_time_recursive", "io_wait_time_recursive"),
    ("throttle", "blkio.throttle.", "io_serviced_recursive", "io_service_bytes_recursive", "", "", ""),
    ("throttle", "blkio.throttle.", "io_serviced", "io_service_bytes", "", "", ""),
)


Reader = Callable[[str], bytes]  # hostfs.read_bytes, or fdcache.FdCache.read on a live host


def _read_optional(path: str, read: Reader) -> str | None:
    """File text, or None when the file does not exist (an optional statistic)."""
    try:
        return read(path).decode("ascii", "replace")
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise CgroupUnavailable(path, f"unreadable: {e.strerror}") from e


def _v1_family(cg: CgroupDir, fam: tuple[str, str, str, str, str, str, str],
               read: Reader) -> dict[DevT, IoCounters] | None:
    _family, prefix, serviced_f, bytes_f, merged_f, svctime_f, wait_f = fam
    base = cg.path.rstrip("/")
    serviced_p = f"{base}/{prefix}{serviced_f}"
    serviced_t = _read_optional(serviced_p, read)
    if serviced_t is None:
        return None
    serviced = parse_blkio_rwstat(serviced_t, serviced_p)
    if not serviced:
        # Only the "Total 0" line: this family accounts no device for the cgroup (the usual case for bfq
        # and throttle on blk-mq), so its other files are not worth reading (each read costs ~15 us).
        return {}
    bytes_p = f"{base}/{prefix}{bytes_f}"
    bytes_t = _read_optional(bytes_p, read)
    if bytes_t is None:
        return None
    nbytes = parse_blkio_rwstat(bytes_t, bytes_p)
    empty: dict[DevT, dict[str, int]] = {}

    def opt(f: str) -> dict[DevT, dict[str, int]]:
        if not f:
            return empty
        p = f"{base}/{prefix}{f}"
        t = _read_optional(p, read)
        return parse_blkio_rwstat(t, p) if t is not None else empty

    merged, svctime, wait = opt(merged_f), opt(svctime_f), opt(wait_f)
    out: dict[DevT, IoCounters] = {}
    for dev in serviced.keys() | nbytes.keys():
        s, b = serviced.get(dev, {}), nbytes.get(dev, {})
        m, st, wt = merged.get(dev, {}), svctime.get(dev, {}), wait.get(dev, {})
        out[dev] = IoCounters(
            reads=s.get("Read", 0), read_merged=m.get("Read", 0), read_bytes=b.get("Read", 0),
            read_time_ns=st.get("Read", 0) + wt.get("Read", 0),
            writes=s.get("Write", 0), write_merged=m.get("Write", 0), write_bytes=b.get("Write", 0),
            write_time_ns=st.get("Write", 0) + wt.get("Write", 0),
            discards=s.get("Discard", 0), discard_merged=m.get("Discard", 0), discard_bytes=b.get("Discard", 0),
            discard_time_ns=st.get("Discard", 0) + wt.get("Discard", 0),
            io_time_ns=st.get("Total", 0),
            source=f"{prefix}{serviced_f}",
        )
    return out


def _v1_counters(cg: CgroupDir, read: Reader) -> dict[DevT, IoCounters]:
    found_any = False
    best: dict[DevT, IoCounters] = {}
    done_throttle = False
    for fam in _V1_FAMILIES:
        if fam[0] == "throttle" and done_throttle:
            continue  # the flat throttle files are only a fallback for kernels without the recursive ones
        got = _v1_family(cg, fam, read)
        if got is None:
            continue
        found_any = True
        if fam[0] == "throttle":
            done_throttle = True
        for dev, c in got.items():
            prev = best.get(dev)
            if prev is None or c.total_ios > prev.total_ios:
                best[dev] = c
    if not found_any:
        raise CgroupUnavailable(cg.path, "no blkio statistics files (cfq, bfq or throttle)")
    return best


def _v2_counters(cg: CgroupDir, read: Reader) -> dict[DevT, IoCounters]:
    path = f"{cg.path.rstrip('/')}/io.stat"
    text = _read_optional(path, read)
    if text is None:
        # io.stat exists in every non-root cgroup once the io controller is enabled for it
        # (cgroup-v2.rst: "io.stat ... present on non-root cgroups"); absent = not enabled.
        raise CgroupUnavailable(path, "missing (io controller not enabled for this cgroup)")
    out: dict[DevT, IoCounters] = {}
    for dev, kv in parse_io_stat(text, path).items():
        out[dev] = IoCounters(
            reads=kv.get("rios", 0), read_bytes=kv.get("rbytes", 0),
            writes=kv.get("wios", 0), write_bytes=kv.get("wbytes", 0),
            discards=kv.get("dios", 0), discard_bytes=kv.get("dbytes", 0),
            source="io.stat",
        )
    return out


def io_counters(cg: CgroupDir, read: Reader = read_bytes) -> dict[DevT, IoCounters]:
    """Per-device I/O counters of the cgroup. Raises CgroupUnavailable when it has no statistics files."""
    return _v2_counters(cg, read) if cg.v2 else _v1_counters(cg, read)
