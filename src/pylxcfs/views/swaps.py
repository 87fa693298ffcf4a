"""/proc/swaps for a container (spec §6.2; LXCFS proc_swaps_read).

The header is the host's own first line (the kernel's, with its two tabs; LXCFS prints one). A single
"none ... virtual" line shows the container's swap (same figures as SwapTotal/SwapFree in our meminfo) when
that is > 0; -u, swap accounting off or a host without swap give the header only. The host's swap size is the
sum of the Size column of its /proc/swaps (equal to meminfo's SwapTotal), so one host file is read, and no cgroup
file at all when there is nothing to show. A cgroup read failure gets the host file (service policy; LXCFS
returns an empty read there instead).
"""

from __future__ import annotations

from pylxcfs.cgroups import memory
from pylxcfs.context import ContainerContext, ViewEnv, ViewOptions
from pylxcfs.errors import CgroupUnavailable
from pylxcfs.views.meminfo import swap_kib
from pylxcfs.views.readers import reader


def render_swaps(header: str, host_swap_kib: int, mem: memory.MemorySnapshot, opts: ViewOptions) -> str:
    """The container's /proc/swaps text; `header` is the host's first line without its newline."""
    total, used = swap_kib(host_swap_kib, mem, opts)
    out = header + "\n"
    if total > 0:
        # Column layout of mm/swapfile.c swap_show(): name padded to 40, then tab-separated columns with an
        # extra tab after numbers below 10^7.
        t1 = "\t" if total < 10_000_000 else ""
        t2 = "\t" if used < 10_000_000 else ""
        out += f"{'none':<40}virtual\t\t{total}\t{t1}{used}\t{t2}0\n"
    return out


def host_swap_kib(swaps_text: str) -> int:
    """Total host swap in kB: the sum of the Size column of the host's /proc/swaps (= meminfo SwapTotal)."""
    total = 0
    for line in swaps_text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2].isdigit():
            total += int(parts[2])
    return total


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """View entry point (context.py contract)."""
    if ctx.memory is None:
        raise CgroupUnavailable("memory", "no memory cgroup for the container")
    read = reader(env)  # cached descriptors on a live host (views/readers.py): always fresh content
    text = read(env.root.proc_path("swaps")).decode()
    header = text.split("\n", 1)[0]
    host_swap = host_swap_kib(text)
    if env.opts.disable_swap or host_swap <= 0:
        return header + "\n"  # nothing to show whatever the cgroup says: skip the cgroup reads
    return render_swaps(header, host_swap, memory.snapshot(ctx.memory, want_swap=True, read=read), env.opts)
