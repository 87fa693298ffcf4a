"""Memory controller access by meaning, v1 and v2 behind one interface (LXCFS cgroup_ops memory getters).

Every function takes the container's memory CgroupDir (absolute path under the HostRoot, set by the
resolver) and dispatches on `cg.v2`. Units are bytes. `None` means unlimited ("max" on v2, the near-LONG_MAX
value on v1); a missing optional file is None too, a missing required file raises CgroupUnavailable.

v1 vs v2 (Documentation/admin-guide/cgroup-v1/memory.rst, cgroup-v2.rst "Memory"):
- limit: v1 memory.limit_in_bytes, v2 memory.max; effective limit = min over the cgroup and its ancestors
  below the mount root (the root cgroup has no limit: v2 has no memory.max there, v1 reads unlimited).
- usage: v1 memory.usage_in_bytes, v2 memory.current.
- stats: v1 memory.stat `total_*` (hierarchical) keys, v2 memory.stat plain keys (always hierarchical).
- swap: v1 memory.memsw.* count RAM+swap, v2 memory.swap.* count swap only; converted in ONE place,
  `_v1_swap_from_memsw`. No memsw / swap.current file = swap accounting off (swapaccount=0, or
  CONFIG_MEMCG_SWAP unset) -> swap() returns None.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable, ParseError
from pylxcfs.hostfs import read_bytes
from pylxcfs.parse.keyvalue import parse_flat_keyed, parse_int, parse_limit

_MAX_LEVELS = 1000  # LXCFS stops its ancestor walk after 1000 levels too

# How files are read: hostfs.read_bytes (the default), or fdcache.FdCache.read (cached descriptors re-read
# with pread at 0, which regenerates a cgroup file: fresh content on every call) on a live host.
Reader = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class MemoryStat:
    """memory.stat values by meaning (bytes). v1 reads `total_<x>`, v2 the names in the comments."""

    cache: int  # v1 total_cache, v2 file (page cache incl. shmem/tmpfs, as the kernel's Cached)
    shmem: int  # total_shmem / shmem
    mapped: int  # total_mapped_file / file_mapped
    dirty: int  # total_dirty / file_dirty
    writeback: int  # total_writeback / file_writeback
    active_anon: int
    inactive_anon: int
    active_file: int
    inactive_file: int
    unevictable: int
    anon_huge: int  # total_rss_huge / anon_thp
    swapcached: int  # total_swapcached / swapcached (v2 since 6.4); 0 if absent
    slab: int  # v2 slab; v1 has no slab in memory.stat -> 0
    slab_reclaimable: int  # v2 slab_reclaimable; v1 -> 0
    slab_unreclaimable: int  # v2 slab_unreclaimable; v1 -> 0
    zswap: int  # v2 zswap (5.19+); else 0
    zswapped: int  # v2 zswapped; else 0
    # v1 only: hierarchical_memory_limit / hierarchical_memsw_limit, the kernel's own min over the ancestors
    # (memcg1_stat_format). False/None when absent (v2, or memsw without swap accounting).
    has_hierarchical_limit: bool
    hierarchical_limit: int | None
    hierarchical_memsw_limit: int | None


# (field, v1 key, v2 key). Exact key matches: LXCFS's prefix matching made AnonHugePages and (v2) Mapped
# always 0 (spec §5.3); we deliberately report the real values.
_STAT_KEYS: tuple[tuple[str, str, str], ...] = (
    ("cache", "total_cache", "file"),
    ("shmem", "total_shmem", "shmem"),
    ("mapped", "total_mapped_file", "file_mapped"),
    ("dirty", "total_dirty", "file_dirty"),
    ("writeback", "total_writeback", "file_writeback"),
    ("active_anon", "total_active_anon", "active_anon"),
    ("inactive_anon", "total_inactive_anon", "inactive_anon"),
    ("active_file", "total_active_file", "active_file"),
    ("inactive_file", "total_inactive_file", "inactive_file"),
    ("unevictable", "total_unevictable", "unevictable"),
    ("anon_huge", "total_rss_huge", "anon_thp"),
    ("swapcached", "total_swapcached", "swapcached"),
    ("slab", "", "slab"),
    ("slab_reclaimable", "", "slab_reclaimable"),
    ("slab_unreclaimable", "", "slab_unreclaimable"),
    ("zswap", "", "zswap"),
    ("zswapped", "", "zswapped"),
)
_V1_NEEDED = {k1: f for f, k1, _ in _STAT_KEYS if k1}
_V2_NEEDED = {k2: f for f, _, k2 in _STAT_KEYS}


@dataclass(frozen=True, slots=True)
class SwapUsage:
    """Swap by meaning (swap only, never RAM+swap)."""

    limit_bytes: int | None  # None = unlimited
    usage_bytes: int


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """What /proc/meminfo and /proc/swaps need from one cgroup, read once per open."""

    limit_bytes: int | None  # effective (min over ancestors); None = unlimited
    usage_bytes: int
    stat: MemoryStat
    swap: SwapUsage | None  # None: swap accounting off, or not asked for
    swappiness: int | None  # v1 memory.swappiness; None on v2 (no such file) or when not asked for


def _read(path: str, read: Reader = read_bytes) -> bytes | None:
    try:
        return read(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CgroupUnavailable(path, e.strerror or str(e)) from None


def _required(path: str, read: Reader = read_bytes) -> bytes:
    data = _read(path, read)
    if data is None:
        raise CgroupUnavailable(path)
    return data


def _ancestors(cg: CgroupDir) -> list[str]:
    """cg.path and its parents, stopping before the mount root (the root cgroup never has a limit)."""
    out: list[str] = []
    d = cg.path.rstrip("/")
    root = cg.mount_root.rstrip("/")
    while d != root and d.startswith(root + "/") and len(out) < _MAX_LEVELS:
        out.append(d)
        d = d.rsplit("/", 1)[0]
    return out


def _min_limit(cg: CgroupDir, name: str, own_required: bool, read: Reader = read_bytes) -> int | None:
    """min over the chain of `name`; a missing file above the cgroup itself counts as unlimited."""
    best: int | None = None
    for i, d in enumerate(_ancestors(cg)):
        path = f"{d}/{name}"
        data = _required(path, read) if (i == 0 and own_required) else _read(path, read)
        if data is None:
            continue
        v = parse_limit(data.decode(), path)
        if v is not None and (best is None or v < best):
            best = v
            if v == 0:
                break
    return best


def memory_limit(cg: CgroupDir, read: Reader = read_bytes) -> int | None:
    """Effective memory limit in bytes (min over the cgroup and its ancestors); None = unlimited."""
    # v1: the cgroup's own file must exist (spec §5.2); v2: memory.max is absent where the memory
    # controller is not enabled for that level, which means "no limit at that level".
    return _min_limit(cg, "memory.max" if cg.v2 else "memory.limit_in_bytes", own_required=not cg.v2, read=read)


def memory_usage(cg: CgroupDir, read: Reader = read_bytes) -> int:
    """Current memory usage in bytes (v1 usage_in_bytes, v2 memory.current)."""
    path = f"{cg.path}/{'memory.current' if cg.v2 else 'memory.usage_in_bytes'}"
    return parse_int(_required(path, read).decode(), path)


def memory_stat(cg: CgroupDir, read: Reader = read_bytes) -> MemoryStat:
    """The memory.stat values views use (bytes). Missing keys are 0 (older kernels lack some)."""
    path = f"{cg.path}/memory.stat"
    text = _required(path, read).decode()
    if not cg.v2:
        # v1 prints the cgroup-local keys first, then hierarchical_*_limit and the total_* keys we use
        # (memcg1_stat_format): skip the first half.
        start = text.find("hierarchical_memory_limit ")
        if start > 0:
            text = text[start:]
    try:
        # dict(map(str.split, ...)) runs in C: a Python loop over v1's ~80 lines cost ~10 us per open.
        raw: dict[str, str] = dict(map(str.split, text.splitlines()))
    except ValueError:
        bad = next((ln for ln in text.splitlines() if len(ln.split()) != 2), "")
        raise ParseError(path, "expected 'key value' lines", line=bad) from None
    try:
        if cg.v2:
            vals = {f: int(raw.get(k, 0)) for k, f in _V2_NEEDED.items()}
            return MemoryStat(**vals, has_hierarchical_limit=False, hierarchical_limit=None,
                              hierarchical_memsw_limit=None)
        vals = dict.fromkeys(_V2_NEEDED.values(), 0)
        for k, f in _V1_NEEDED.items():
            v = raw.get(k)
            if v is not None:
                vals[f] = int(v)
    except ValueError as e:
        raise ParseError(path, f"bad value: {e}") from None
    hier = raw.get("hierarchical_memory_limit")
    hier_sw = raw.get("hierarchical_memsw_limit")
    return MemoryStat(**vals, has_hierarchical_limit=hier is not None,
                      hierarchical_limit=None if hier is None else parse_limit(hier, path),
                      hierarchical_memsw_limit=None if hier_sw is None else parse_limit(hier_sw, path))


def _v1_swap_from_memsw(mem_limit: int | None, memsw_limit: int | None, mem_usage: int,
                        memsw_usage: int) -> SwapUsage:
    """THE one place where v1's RAM+swap counters become swap-only ones (cgroup-v1/memory.rst §2.4:
    memory.memsw.* = memory + swap). v2's memory.swap.* are swap-only already (cgroup-v2.rst)."""
    if memsw_limit is None:
        limit: int | None = None
    elif mem_limit is None:
        limit = memsw_limit  # RAM unlimited: all of the memsw allowance could be swap
    else:
        limit = max(0, memsw_limit - mem_limit)
    return SwapUsage(limit, max(0, memsw_usage - mem_usage))


def swap(cg: CgroupDir, mem_limit: int | None, mem_usage: int, st: MemoryStat | None = None,
         read: Reader = read_bytes) -> SwapUsage | None:
    """Swap limit (effective, swap only; None = unlimited) and usage; None if swap accounting is off.
    `mem_limit`/`mem_usage` are this cgroup's memory_limit()/memory_usage() (needed for v1's conversion)."""
    if cg.v2:
        path = f"{cg.path}/memory.swap.current"
        cur = _read(path, read)
        if cur is None:
            return None
        return SwapUsage(_min_limit(cg, "memory.swap.max", own_required=False, read=read),
                         parse_int(cur.decode(), path))
    upath = f"{cg.path}/memory.memsw.usage_in_bytes"
    used = _read(upath, read)
    if used is None:
        return None
    if st is not None and st.has_hierarchical_limit:
        memsw_limit = st.hierarchical_memsw_limit  # the kernel's min over ancestors (see MemoryStat)
    else:
        memsw_limit = _min_limit(cg, "memory.memsw.limit_in_bytes", own_required=True, read=read)
    return _v1_swap_from_memsw(mem_limit, memsw_limit, mem_usage, parse_int(used.decode(), upath))


def swappiness(cg: CgroupDir, read: Reader = read_bytes) -> int | None:
    """v1 memory.swappiness (0 disables swapping for the cgroup); None on v2 or when absent."""
    if cg.v2:
        return None
    path = f"{cg.path}/memory.swappiness"
    data = _read(path, read)
    return None if data is None else parse_int(data.decode(), path)


def snapshot(cg: CgroupDir, want_swap: bool, read: Reader = read_bytes) -> MemorySnapshot:
    """Everything meminfo/swaps need, each file read once. want_swap False skips the swap files (used when
    the host has no swap or -u is set: the answer is 0 whatever the cgroup says)."""
    st = memory_stat(cg, read)
    # v1 computes min(memory.limit_in_bytes) up the tree itself, so the memory.stat we read anyway
    # replaces the ancestor walk (~6 us per level on this machine).
    limit = st.hierarchical_limit if st.has_hierarchical_limit else memory_limit(cg, read)
    usage = memory_usage(cg, read)
    sw = swap(cg, limit, usage, st, read) if want_swap else None
    swp = swappiness(cg, read) if want_swap else None
    return MemorySnapshot(limit, usage, st, sw, swp)


# v1 memory.stat names (memcg1_stat_format, hierarchical `total_` half, prefix stripped) -> the v2 name of the
# same counter (cgroup-v2.rst memory.stat). Keys not listed keep their name (inactive_anon, pgfault,
# workingset_refault_file ... mean the same in both). v1 pgpgin/pgpgout count pages CHARGED to the cgroup
# (cgroup-v1/memory.rst 5.2), not block I/O as /proc/vmstat's do, and v1 `swap` is a size v2 keeps in
# memory.swap.current: none of the three has a v2 counterpart, so they are dropped.
_V1_TO_V2 = {"cache": "file", "rss": "anon", "rss_huge": "anon_thp", "mapped_file": "file_mapped",
             "dirty": "file_dirty", "writeback": "file_writeback"}
_V1_DROPPED = frozenset({"pgpgin", "pgpgout", "swap"})


def memory_stat_all(cg: CgroupDir, read: Reader = read_bytes) -> dict[str, int]:
    """Every hierarchical memory.stat counter, by its v2 name (sizes in bytes, events as counts), in file order.
    v2: the file as it is (always hierarchical). v1: the `total_*` keys, renamed to the v2 vocabulary."""
    path = f"{cg.path}/memory.stat"
    raw = parse_flat_keyed(_required(path, read).decode(), path)
    if cg.v2:
        return raw
    out: dict[str, int] = {}
    for key, value in raw.items():
        if not key.startswith("total_"):
            continue  # the cgroup-local half (no descendants), and the hierarchical_*_limit lines
        name = key[len("total_"):]
        if name not in _V1_DROPPED:
            out[_V1_TO_V2.get(name, name)] = value
    return out


def oom_kills(cg: CgroupDir, read: Reader = read_bytes) -> int | None:
    """Processes of the cgroup and its descendants killed by an OOM killer: v2 memory.events `oom_kill`, v1
    memory.oom_control `oom_kill` (both 4.13+; the counter is propagated to every ancestor in both). None when
    the file or key is absent (older kernels)."""
    path = f"{cg.path}/{'memory.events' if cg.v2 else 'memory.oom_control'}"
    data = _read(path, read)
    if data is None:
        return None
    return parse_flat_keyed(data.decode(), path).get("oom_kill")
