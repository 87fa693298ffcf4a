"""/proc/partitions for the caller's container (no cgroup needed).

Rows: the host's /proc/partitions rows, in host order, for devices the container can see: a block
node in its /dev (named as that node) or the device holding its root filesystem (named `sda`, the
partition itself when the root is on a partition). Sizes are the host's (1 KiB blocks). Devices the
kernel leaves out of /proc/partitions (zero-sized or hidden disks) stay out. Header and line format
are the kernel's (block/genhd.c show_partition: "major minor  #blocks  name", "%4d  %7d %10llu %s").

`render_partitions` is pure; `produce` gathers through env.root.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pylxcfs.context import ContainerContext, ViewEnv
from pylxcfs.devnames import ContainerDevices, cache_from_states
from pylxcfs.parse.diskstats import DevT, PartitionLine, parse_partitions
from pylxcfs.views.readers import reader

ROOT_NAME = "sda"
HEADER = "major minor  #blocks  name\n\n"


def partitions_names(devs: ContainerDevices) -> dict[DevT, str]:
    """Device -> name shown in partitions: the container's node names, and the root device as `sda`."""
    names = dict(devs.nodes)
    if devs.root_dev is not None:
        names[devs.root_dev] = ROOT_NAME
    return names


def render_partitions(host: Sequence[PartitionLine], names: Mapping[DevT, str]) -> str:
    """The container's /proc/partitions text."""
    rows = [f"{p.major:4d}  {p.minor:7d} {p.blocks_kib:10d} {names[p.dev]}\n" for p in host if p.dev in names]
    return HEADER + "".join(rows)


def produce(env: ViewEnv, ctx: ContainerContext) -> str:
    """Gather (container devices, host partitions) and render."""
    devs = cache_from_states(env.states).get(env.root, ctx.init_pid, ctx.init_start_ticks)
    host = parse_partitions(reader(env)(env.root.proc_path("partitions")).decode("ascii", "replace"))
    return render_partitions(host, partitions_names(devs))
