"""/proc/meminfo for a container (spec §6.1; LXCFS proc_meminfo_read).

gather(): host /proc/meminfo + the container's memory cgroup (cgroups/memory.py), each read once.
render_meminfo(): pure. Every host line is kept, in order and byte for byte, except the keys computed from the
cgroup, which are rewritten in the kernel's layout ("%-16s%8lu kB", fs/proc/meminfo.c show_val_kb), so `free`,
`top` and `htop` parse them. All arithmetic is clamped at 0 (a usage briefly above the limit must not print a
wrapped unsigned number as LXCFS does).

Deliberate choices (documented divergences from LXCFS 5.0/7.0):
- MemAvailable = MemFree + active_file + inactive_file + slab_reclaimable (the 7.0 formula), capped at MemTotal.
- SwapTotal is the swap-ONLY limit capped at the host's SwapTotal (host SwapTotal when unlimited); LXCFS v1 adds
  MemTotal to it. SwapFree = SwapTotal - swap used. Swap accounting off, -u, or no host swap -> 0 and 0.
- AnonHugePages and Mapped come from the exact memory.stat keys (LXCFS's prefix match made them 0).
- Mlocked is capped at Unevictable (mlocked pages sit on the unevictable LRU), where LXCFS leaks the host value;
  KReclaimable = SReclaimable (LXCFS: host value).

Speed: on a live host the files are read through cached descriptors (views/readers.py, pread at
offset 0 regenerates procfs/cgroupfs seq files, so every open still sees the kernel's current values; saves
the path lookup, ~12 us of the ~30 us of reads). Nothing rendered is kept across opens.
"""

from __future__ import annotations

from pylxcfs.cgroups import memory
from pylxcfs.context import ContainerContext, ViewEnv, ViewOptions
from pylxcfs.errors import CgroupUnavailable, ParseError
from pylxcfs.parse.meminfo import Meminfo, parse_meminfo
from pylxcfs.views.readers import reader

Reader = memory.Reader
def swap_kib(host_swap_kib: int, mem: memory.MemorySnapshot, opts: ViewOptions) -> tuple[int, int]:
    """(SwapTotal, swap used) in kB for the container; shared with /proc/swaps."""
    sw = mem.swap
    if opts.disable_swap or sw is None or host_swap_kib <= 0:
        return 0, 0
    total = host_swap_kib if sw.limit_bytes is None else min(sw.limit_bytes // 1024, host_swap_kib)
    used = min(sw.usage_bytes // 1024, total)
    if mem.swappiness == 0:
        # memory.swappiness 0: the cgroup never swaps out more, so what it has is all it can have (LXCFS).
        total = used
    return total, used


def meminfo_values(host: Meminfo, mem: memory.MemorySnapshot, opts: ViewOptions) -> dict[str, int]:
    """The rewritten keys (kB); every other host key is passed through."""
    host_total = host.value_kib("MemTotal")
    if host_total is None:
        raise ParseError("meminfo", "host file has no MemTotal")
    total = host_total if mem.limit_bytes is None else min(host_total, mem.limit_bytes // 1024)
    free = max(0, total - mem.usage_bytes // 1024)
    s = mem.stat
    kib = 1024
    avail = min(total, free + (s.active_file + s.inactive_file + s.slab_reclaimable) // kib)
    sw_total, sw_used = swap_kib(host.value_kib("SwapTotal") or 0, mem, opts)
    unevictable = s.unevictable // kib
    v = {
        "MemTotal": total,
        "MemFree": free,
        "MemAvailable": avail,
        "Buffers": 0,  # no per-cgroup buffer accounting; LXCFS prints 0 too
        "Cached": s.cache // kib,
        "SwapCached": s.swapcached // kib,
        "Active": (s.active_anon + s.active_file) // kib,
        "Inactive": (s.inactive_anon + s.inactive_file) // kib,
        "Active(anon)": s.active_anon // kib,
        "Inactive(anon)": s.inactive_anon // kib,
        "Active(file)": s.active_file // kib,
        "Inactive(file)": s.inactive_file // kib,
        "Unevictable": unevictable,
        "SwapTotal": sw_total,
        "SwapFree": sw_total - sw_used,
        "Zswap": s.zswap // kib,
        "Zswapped": s.zswapped // kib,
        "Dirty": s.dirty // kib,
        "Writeback": s.writeback // kib,
        # shmem is on the anon LRUs but is not AnonPages (LXCFS and the kernel's NR_ANON_MAPPED agree).
        "AnonPages": max(0, s.active_anon + s.inactive_anon - s.shmem) // kib,
        "Mapped": s.mapped // kib,
        "Shmem": s.shmem // kib,
        # KReclaimable = SReclaimable + other reclaimable kernel memory (kernel 4.20+); the container has only
        # its slab to show, and the host's value would exceed the container's Slab.
        "KReclaimable": s.slab_reclaimable // kib,
        "Slab": s.slab // kib,
        "SReclaimable": s.slab_reclaimable // kib,
        "SUnreclaim": s.slab_unreclaimable // kib,
        "AnonHugePages": s.anon_huge // kib,
        "ShmemHugePages": 0,
        "ShmemPmdMapped": 0,
    }
    mlocked = host.value_kib("Mlocked")
    if mlocked is not None:
        v["Mlocked"] = min(mlocked, unevictable)
    return v


def render_meminfo(host: Meminfo, mem: memory.MemorySnapshot, opts: ViewOptions) -> str:
    """The container's /proc/meminfo text."""
    return host.rewrite(meminfo_values(host, mem, opts))


def gather(env: ViewEnv, ctx: ContainerContext) -> tuple[Meminfo, memory.MemorySnapshot]:
    """All reads for one open(): host /proc/meminfo and the memory cgroup."""
    if ctx.memory is None:
        raise CgroupUnavailable("memory", "no memory cgroup for the container")
    read = reader(env)
    host = parse_meminfo(read(env.root.proc_path("meminfo")).decode())
    # Without host swap (or with -u) the swap lines are 0 whatever the cgroup says: skip those reads.
    want_swap = not env.opts.disable_swap and (host.value_kib("SwapTotal") or 0) > 0
    return host, memory.snapshot(ctx.memory, want_swap, read)


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """View entry point (context.py contract)."""
    host, mem = gather(env, ctx)
    return render_meminfo(host, mem, env.opts)
