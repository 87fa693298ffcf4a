"""/proc/vmstat for a container: the counters its cgroup keeps, in the host file's layout (no peer does this).

Role: one virtual file (registry "proc/vmstat"). procps `vmstat` (si/so from pswpin/pswpout, bi/bo from
pgpgin/pgpgout), `vmstat -s`, sysstat `sar -B` (pgpgin/s, pgpgout/s, fault/s, majflt/s, pgscank/s, pgsteal/s),
psutil's swap_memory() (sin/sout) and exporters read it.

Rule, line by line over the host's file (its order and key set, so a newer kernel's lines are handled):
1. A counter the container's cgroup keeps is the container's value, in /proc/vmstat's unit:
   - sizes from memory.stat (bytes) in pages: nr_anon_pages (anon; v1 rss), nr_file_pages (file; v1 cache),
     nr_shmem, nr_mapped (file_mapped), nr_dirty, nr_writeback, nr_swapcached, the LRU lists nr_{in,}active_
     {anon,file} and nr_unevictable with their nr_zone_* twins (equal on the host too: the same pages summed
     over zones), nr_zone_write_pending (dirty + writeback), nr_slab_{un,}reclaimable, nr_page_table_pages,
     nr_sec_page_table_pages, nr_hugetlb; nr_kernel_stack in kB (the kernel prints it in kB); the THP counts
     (anon_thp, file_thp, shmem_thp; v1 rss_huge) in units of hpage_pmd_size, as vmstat prints them;
   - events of memory.stat that have the same name in /proc/vmstat, copied: pgfault, pgmajfault, workingset_*,
     pgrefill, pgactivate, pgdeactivate, pglazyfree(d), pgscan_*/pgsteal_*, pswpin/pswpout (v2 memory.stat,
     newer kernels), zswpin/zswpout, thp_*, numa_*, pgdemote_*, ... whatever this kernel's memory.stat has;
   - pgpgin/pgpgout from the io controller: kB read/written by the container's block I/O (v2 io.stat rbytes/
     wbytes; v1 the blkio files cgroups/blkio.py reads), the unit and meaning of the host lines (kB of block I/O,
     mm/vmstat.c divides sectors by 2). v1 memory.stat's pgpgin/pgpgout count page charges, not I/O: never used;
   - oom_kill from v2 memory.events (v1: memory.oom_control); nr_free_pages = the container's MemFree
     (views/meminfo.py) in pages.
2. A line the cgroup cannot supply is 0 when the host's value is 0 (the container's share of nothing is
   nothing: a cgroup's pages and events are a subset of the host's), and is LEFT OUT otherwise: printing the
   host's number would describe other tenants, printing 0 would claim an absence we do not know. Thresholds
   (nr_dirty_threshold, nr_dirty_background_threshold) are not counts and are always left out.
Tools treat a missing line as 0 (procps vmstat and sar -B checked), except psutil's swap_memory(), which
warns ("'sin' and 'sout' swap memory stats couldn't be determined and were set to 0") when pswpin/pswpout are
missing: that happens only when the cgroup has no swap event counters (v1; v2 before they were added to
memory.stat) and the host has swapped.
No memory cgroup: the renderer serves the host file (CgroupUnavailable).
"""

from __future__ import annotations

import os

from pylxcfs.cgroups import blkio, memory
from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.parse.keyvalue import parse_flat_keyed, parse_int
from pylxcfs.views import meminfo
from pylxcfs.views.readers import Reader, reader

__all__ = ["container_counters", "produce", "render_vmstat"]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_THP_SIZE = "kernel/mm/transparent_hugepage/hpage_pmd_size"

# memory.stat (v2 names, bytes) -> the /proc/vmstat lines it gives, in pages.
_PAGES: dict[str, tuple[str, ...]] = {
    "anon": ("nr_anon_pages",),
    "file": ("nr_file_pages",),
    "shmem": ("nr_shmem",),
    "file_mapped": ("nr_mapped",),
    "file_dirty": ("nr_dirty",),
    "file_writeback": ("nr_writeback",),
    "swapcached": ("nr_swapcached",),
    "inactive_anon": ("nr_inactive_anon", "nr_zone_inactive_anon"),
    "active_anon": ("nr_active_anon", "nr_zone_active_anon"),
    "inactive_file": ("nr_inactive_file", "nr_zone_inactive_file"),
    "active_file": ("nr_active_file", "nr_zone_active_file"),
    "unevictable": ("nr_unevictable", "nr_zone_unevictable"),
    "slab_reclaimable": ("nr_slab_reclaimable",),
    "slab_unreclaimable": ("nr_slab_unreclaimable",),
    "pagetables": ("nr_page_table_pages",),
    "sec_pagetables": ("nr_sec_page_table_pages",),
    "hugetlb": ("nr_hugetlb",),
}
# memory.stat (bytes) -> vmstat lines counted in transparent huge pages (mm/vmstat.c vmstat_item_print_in_thp).
_THPS: dict[str, str] = {"anon_thp": "nr_anon_transparent_hugepages", "file_thp": "nr_file_hugepages",
                         "shmem_thp": "nr_shmem_hugepages"}
# Not counts: limits derived from the host's dirty ratios; no container share exists.
_NOT_COUNTS = frozenset({"nr_dirty_threshold", "nr_dirty_background_threshold"})
# memory.stat keys never copied by name: sizes (bytes; cgroup-v2.rst memory.stat) and the v1 names of
# pgpgin/pgpgout (page charges there, kB of block I/O in vmstat; cgroups.memory already drops them for v1).
_NOT_SAME = frozenset({"pgpgin", "pgpgout", "kernel", "kernel_stack", "percpu", "sock", "vmalloc", "zswap",
                       "zswapped", "slab", "swap"})


def container_counters(stat: dict[str, int], *, page_size: int = PAGE_SIZE, thp_bytes: int | None = None,
                       io_kib: tuple[int, int] | None = None, oom_kill: int | None = None,
                       free_kib: int | None = None) -> dict[str, int]:
    """The /proc/vmstat lines the container has, in vmstat's units. Pure.

    stat: memory.stat by v2 name (cgroups.memory.memory_stat_all); thp_bytes: hpage_pmd_size (None: THP lines
    not supplied); io_kib: (read, written) kB of block I/O (None: no io accounting); oom_kill: v2 memory.events
    oom_kill; free_kib: the container's MemFree."""
    out: dict[str, int] = {}
    for key, value in stat.items():
        if key in _PAGES:
            for line in _PAGES[key]:
                out[line] = value // page_size
        elif key in _THPS:
            if thp_bytes:
                out[_THPS[key]] = value // thp_bytes
        elif key not in _NOT_SAME and not key.startswith("nr_"):
            out[key] = value  # an event counter (or a key vmstat lacks: dropped by render_vmstat)
    if "file_dirty" in stat and "file_writeback" in stat:
        out["nr_zone_write_pending"] = (stat["file_dirty"] + stat["file_writeback"]) // page_size
    if "kernel_stack" in stat:
        out["nr_kernel_stack"] = stat["kernel_stack"] // 1024
    if io_kib is not None:
        out["pgpgin"], out["pgpgout"] = io_kib
    if oom_kill is not None:
        out["oom_kill"] = oom_kill
    if free_kib is not None:
        out["nr_free_pages"] = free_kib * 1024 // page_size
    return out


def render_vmstat(host: dict[str, int], mine: dict[str, int]) -> str:
    """The container's /proc/vmstat: the host's lines in order, each the container's value, 0 where the host's
    is 0, or left out (module docstring, rule 2). Pure."""
    lines = []
    for key, host_value in host.items():
        if key in mine:
            lines.append(f"{key} {mine[key]}\n")
        elif host_value == 0 and key not in _NOT_COUNTS:
            lines.append(f"{key} 0\n")
    return "".join(lines)


def _io_kib(env: ViewEnv, ctx: ContainerContext, read: Reader) -> tuple[int, int] | None:
    if ctx.blkio is None:
        return None
    try:
        counters = blkio.io_counters(ctx.blkio, read)
    except CgroupUnavailable:
        return None  # no io accounting for the group (v2 io controller not enabled, v1 without statistics)
    if not counters and not ctx.blkio.v2:
        # v1 blkio lists only the devices a family accounts (throttle: devices with a rule; BFQ: bfq devices),
        # so an empty answer is "not accounted", not "no I/O". v2 io.stat lists every device with I/O.
        return None
    rd = sum(c.read_bytes for c in counters.values())
    wr = sum(c.write_bytes for c in counters.values())
    return rd // 1024, wr // 1024


def _thp_bytes(env: ViewEnv, read: Reader) -> int | None:
    path = env.root.sys_path(_THP_SIZE)
    try:
        return parse_int(read(path).decode(), path) or None
    except OSError:
        return None  # no THP support: the THP lines are not supplied


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """View entry point (context.py contract)."""
    if ctx.memory is None:
        raise CgroupUnavailable("memory", "no memory cgroup for the container")
    read = reader(env)
    host_text = read(env.root.proc_path("vmstat")).decode()
    host = parse_flat_keyed(host_text, "vmstat")
    stat = memory.memory_stat_all(ctx.memory, read)
    host_mem, mem = meminfo.gather(env, ctx)
    free_kib = meminfo.meminfo_values(host_mem, mem, env.opts)["MemFree"]
    mine = container_counters(stat, thp_bytes=_thp_bytes(env, read), io_kib=_io_kib(env, ctx, read),
                              oom_kill=memory.oom_kills(ctx.memory, read), free_kib=free_kib)
    return render_vmstat(host, mine)
