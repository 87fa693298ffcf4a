#!/usr/bin/env python3
"""Write the synthetic fixture hosts this machine cannot capture (design.md §4.1): pure cgroup v2, pure v1
(legacy, combined "cpu,cpuacct" mount), and edge cases (swap accounting off, a limit only on an ancestor, a
kernel without MemAvailable, a systemd-style init in init.scope, a v2 cgroup without the memory controller).

Every number is chosen here, in one place, so tests can derive expected renders by hand; the file SHAPES follow
the kernel documentation (cgroup-v2.rst "Memory Interface Files", cgroup-v1/memory.rst §5.2, proc(5)) and the
kernel versions named in each MANIFEST.toml. Run:  python tools/make_synthetic_fixtures.py tests/fixtures/hosts
It only (re)writes the trees it owns (the ids below); files other engineers add next to them are kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

MiB = 1 << 20
GiB = 1 << 30

# ---------------------------------------------------------------- host /proc/meminfo texts
MEMINFO_515 = """\
MemTotal:       16384000 kB
MemFree:        12000000 kB
MemAvailable:   14000000 kB
Buffers:          200000 kB
Cached:          1800000 kB
SwapCached:         1024 kB
Active:          2000000 kB
Inactive:        1500000 kB
Active(anon):     600000 kB
Inactive(anon):   100000 kB
Active(file):    1400000 kB
Inactive(file):  1400000 kB
Unevictable:       20000 kB
Mlocked:           20000 kB
SwapTotal:       2097148 kB
SwapFree:        2000000 kB
Dirty:               512 kB
Writeback:             0 kB
AnonPages:        650000 kB
Mapped:           300000 kB
Shmem:             40000 kB
KReclaimable:     150000 kB
Slab:             250000 kB
SReclaimable:     150000 kB
SUnreclaim:       100000 kB
KernelStack:       12000 kB
PageTables:        15000 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:    10289148 kB
Committed_AS:    3000000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       40000 kB
VmallocChunk:          0 kB
Percpu:             8000 kB
HardwareCorrupted:     0 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:      300000 kB
DirectMap2M:    16000000 kB
DirectMap1G:     2097152 kB
"""

MEMINFO_310 = """\
MemTotal:        8009284 kB
MemFree:         5000000 kB
MemAvailable:    6500000 kB
Buffers:          100000 kB
Cached:          1500000 kB
SwapCached:            0 kB
Active:          1500000 kB
Inactive:        1000000 kB
Active(anon):     800000 kB
Inactive(anon):   100000 kB
Active(file):     700000 kB
Inactive(file):   900000 kB
Unevictable:           0 kB
Mlocked:               0 kB
SwapTotal:       4194300 kB
SwapFree:        4194300 kB
Dirty:               100 kB
Writeback:             0 kB
AnonPages:        900000 kB
Mapped:           200000 kB
Shmem:             20000 kB
Slab:             300000 kB
SReclaimable:     200000 kB
SUnreclaim:       100000 kB
KernelStack:        8000 kB
PageTables:        20000 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:     8198940 kB
Committed_AS:    2500000 kB
VmallocTotal:   34359738367 kB
VmallocUsed:      180000 kB
VmallocChunk:   34359500000 kB
HardwareCorrupted:     0 kB
AnonHugePages:    400000 kB
CmaTotal:              0 kB
CmaFree:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
DirectMap4k:      100000 kB
DirectMap2M:     8000000 kB
"""

# Kernels before 3.14 (commit 34e431b0ae39 "/proc/meminfo: provide estimated available memory") lack
# MemAvailable; the rest as 3.10.
MEMINFO_NO_AVAIL = "".join(ln + "\n" for ln in MEMINFO_310.splitlines() if not ln.startswith("MemAvailable:"))

# ---------------------------------------------------------------- helpers

def status(pid: int, ppid: int, nspid: tuple[int, ...], name: str = "sh", state: str = "S (sleeping)") -> str:
    """A /proc/<pid>/status with the fields the resolver reads, in kernel order."""
    ns = "\t".join(str(x) for x in nspid)
    return (f"Name:\t{name}\nUmask:\t0022\nState:\t{state}\nTgid:\t{pid}\nNgid:\t0\nPid:\t{pid}\nPPid:\t{ppid}\n"
            f"TracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t64\nGroups:\t0 \n"
            f"NStgid:\t{ns}\nNSpid:\t{ns}\nNSpgid:\t{ns}\nNSsid:\t{ns}\nThreads:\t1\n")


def stat(pid: int, ppid: int, start_ticks: int, comm: str = "sh", state: str = "S") -> str:
    """A /proc/<pid>/stat line (52 fields) with the given pid, state, ppid and starttime (field 22)."""
    f = [str(pid), f"({comm})", state, str(ppid), str(pid), str(pid), "0", "-1", "4194560", "100", "0", "0",
         "0", "5", "3", "0", "0", "20", "0", "1", "0", str(start_ticks), "2797568", "440"] + ["0"] * 28
    return " ".join(f) + "\n"


def v2_stat(anon: int, file: int, shmem: int, active_anon: int, inactive_anon: int, active_file: int,
            inactive_file: int, slab_r: int, slab_u: int) -> str:
    """A cgroup v2 memory.stat in the 5.15 key order (cgroup-v2.rst)."""
    keys = [
        ("anon", anon), ("file", file), ("kernel_stack", 98304), ("pagetables", 401408), ("percpu", 0),
        ("sock", 0), ("shmem", shmem), ("file_mapped", 8 * MiB), ("file_dirty", 4096), ("file_writeback", 0),
        ("swapcached", 0), ("anon_thp", 2 * MiB), ("file_thp", 0), ("shmem_thp", 0),
        ("inactive_anon", inactive_anon), ("active_anon", active_anon), ("inactive_file", inactive_file),
        ("active_file", active_file), ("unevictable", 0), ("slab_reclaimable", slab_r),
        ("slab_unreclaimable", slab_u), ("slab", slab_r + slab_u), ("workingset_refault_anon", 0),
        ("workingset_refault_file", 0), ("pgfault", 12345), ("pgmajfault", 3),
    ]
    return "".join(f"{k} {v}\n" for k, v in keys)


def v1_stat(rss: int, cache: int, shmem: int, active_anon: int, inactive_anon: int, active_file: int,
            inactive_file: int, hier_mem: int, hier_memsw: int | None) -> str:
    """A cgroup v1 memory.stat (local keys, hierarchical_* limits, total_* keys; cgroup-v1/memory.rst 5.2)."""
    local = [
        ("cache", cache), ("rss", rss), ("rss_huge", 0), ("shmem", shmem), ("mapped_file", 4 * MiB),
        ("dirty", 8192), ("writeback", 0), ("swap", 0), ("pgpgin", 1000), ("pgpgout", 500), ("pgfault", 2000),
        ("pgmajfault", 1), ("inactive_anon", inactive_anon), ("active_anon", active_anon),
        ("inactive_file", inactive_file), ("active_file", active_file), ("unevictable", 0),
    ]
    out = "".join(f"{k} {v}\n" for k, v in local)
    out += f"hierarchical_memory_limit {hier_mem}\n"
    if hier_memsw is not None:
        out += f"hierarchical_memsw_limit {hier_memsw}\n"
    out += "".join(f"total_{k} {v}\n" for k, v in local)
    return out


def write(root: Path, files: dict[str, str]) -> None:
    """Write files (relative path -> text) under root, then the pid-namespace links of its processes."""
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    link_pid_namespaces(root)


HOST_PID_NS = 4026531836  # the initial pid namespace's inode on Linux (PROC_PID_INIT_INO)


def link_pid_namespaces(root: Path) -> None:
    """proc/<pid>/ns/pid (and proc/self/ns/pid) as the kernel shows them, symlinks to "pid:[<inode>]": a process
    whose NSpid has one level is in the host's namespace; any other shares the namespace of the ancestor whose
    NSpid ends in 1 (its init), numbered from that init's pid. Dangling symlinks, as git stores them."""
    status: dict[int, tuple[int, list[int]]] = {}
    for f in (root / "proc").glob("[0-9]*/status"):
        fields = dict(ln.split(":", 1) for ln in f.read_text().splitlines() if ":" in ln)
        status[int(f.parent.name)] = (int(fields["PPid"]), [int(x) for x in fields["NSpid"].split()])

    def ns_of(pid: int) -> int:
        ppid, nspid = status[pid]
        if len(nspid) == 1:
            return HOST_PID_NS
        while nspid[-1] != 1 and ppid in status:
            pid, (ppid, nspid) = ppid, status[ppid]
        return 4026532000 + pid

    links = {f"proc/{pid}/ns/pid": ns_of(pid) for pid in status} | {"proc/self/ns/pid": HOST_PID_NS}
    for rel, ino in links.items():
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(f"pid:[{ino}]")


PROC_MI = "22 28 0:20 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n"
SYS_MI = "23 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
V2_MI = ("35 23 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
         "rw,nsdelegate,memory_recursiveprot\n")
V1_MI = (
    "25 23 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup "
    "rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd\n"
    "29 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup "
    "rw,cpuacct,cpu\n"
    "30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,memory\n"
    "31 25 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpuset\n"
    "32 25 0:30 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,blkio\n"
)
V1_CGROUP_LINE = ("11:cpuset:{p}\n10:memory:{p}\n7:blkio:{p}\n4:cpuacct,cpu:{p}\n"
                  "1:name=systemd:{p}\n")


def manifest(host_id: str, kernel: str, distro: str, layout: str, notes: str, extra: str = "") -> str:
    """MANIFEST.toml text."""
    return (f'# Synthetic fixture host written by tools/make_synthetic_fixtures.py (numbers chosen there).\n'
            f'id = "{host_id}"\nkernel = "{kernel}"\narch = "x86_64"\ndistro = "{distro}"\nlayout = "{layout}"\n'
            f'captured = "synthetic, 2026-11-29"\nhow = "hand-written from kernel file formats"\n'
            f'container_init_pid = 4242\ncontainer_caller_pid = 4243\nhost_caller_pid = 100\n'
            f'redactions = "none (no real host data)"\nnotes = "{notes}"\n{extra}')


def common_procs(uptime: str, init_start: int, caller_state: str = "S") -> dict[str, str]:
    """The host caller (100), the container init (4242) and a caller inside it (4243)."""
    return {
        "proc/uptime": uptime,
        "proc/loadavg": "0.52 0.40 0.33 2/345 6789\n",
        "proc/100/status": status(100, 1, (100,), "bash"),
        "proc/100/stat": stat(100, 1, 500, "bash"),
        "proc/4242/status": status(4242, 4200, (4242, 1)),
        "proc/4242/stat": stat(4242, 4200, init_start),
        "proc/4243/status": status(4243, 4242, (4243, 7), "busy", "R (running)"),
        "proc/4243/stat": stat(4243, 4242, init_start + 50, "busy", caller_state),
    }


def v1_host(cg: str, uptime: str, init_start: int, meminfo: str, vmstat: str, swap_line: str) -> dict[str, str]:
    """A pure-v1 host: common_procs, its meminfo, vmstat and swaps (one device line), the v1 mountinfo; the
    container's processes (4242, 4243) in `cg` of every hierarchy, the host caller (100) in the root."""
    files = common_procs(uptime, init_start)
    line = V1_CGROUP_LINE.format(p=cg)
    files.update({
        "proc/meminfo": meminfo,
        "proc/vmstat": vmstat,
        "proc/swaps": SWAPS_HDR + swap_line,
        "proc/self/mountinfo": PROC_MI + SYS_MI + V1_MI,
        "proc/4242/cgroup": line,
        "proc/4243/cgroup": line,
        "proc/100/cgroup": V1_CGROUP_LINE.format(p="/"),
    })
    return files


def v1_memory(mem: str, limit: int, usage: int, memsw: tuple[int, int] | None, memory_stat: str) -> dict[str, str]:
    """A v1 memory cgroup's files: limit and usage, memsw limit and usage (None: swap accounting off, no such
    files), swappiness 60 and memory.stat."""
    files = {f"{mem}/memory.limit_in_bytes": f"{limit}\n", f"{mem}/memory.usage_in_bytes": f"{usage}\n"}
    if memsw is not None:
        files[f"{mem}/memory.memsw.limit_in_bytes"] = f"{memsw[0]}\n"
        files[f"{mem}/memory.memsw.usage_in_bytes"] = f"{memsw[1]}\n"
    files[f"{mem}/memory.swappiness"] = "60\n"
    files[f"{mem}/memory.stat"] = memory_stat
    return files


# /proc/vmstat (mm/vmstat.c vmstat_text order). 5.15: the node and zone counters, the thresholds, then events.
# Values are the host's: large, and several (numa_*, pgalloc_*, pgfree, compaction) with no cgroup counterpart.
_VMSTAT_515_KEYS = (
    "nr_free_pages 801234", "nr_zone_inactive_anon 120000", "nr_zone_active_anon 260000",
    "nr_zone_inactive_file 700000", "nr_zone_active_file 900000", "nr_zone_unevictable 1024",
    "nr_zone_write_pending 321", "nr_mlock 1024", "nr_bounce 0", "nr_zspages 0", "nr_free_cma 0",
    "numa_hit 987654321", "numa_miss 0", "numa_foreign 0", "numa_interleave 4321", "numa_local 987654321",
    "numa_other 0", "nr_inactive_anon 120000", "nr_active_anon 260000", "nr_inactive_file 700000",
    "nr_active_file 900000", "nr_unevictable 1024", "nr_slab_reclaimable 90000", "nr_slab_unreclaimable 40000",
    "nr_isolated_anon 0", "nr_isolated_file 0", "workingset_nodes 5000", "workingset_refault_anon 1200",
    "workingset_refault_file 345678", "workingset_activate_anon 300", "workingset_activate_file 23456",
    "workingset_restore_anon 100", "workingset_restore_file 12345", "workingset_nodereclaim 0",
    "nr_anon_pages 350000", "nr_mapped 120000", "nr_file_pages 1650000", "nr_dirty 300", "nr_writeback 21",
    "nr_writeback_temp 0", "nr_shmem 50000", "nr_shmem_hugepages 0", "nr_shmem_pmdmapped 0",
    "nr_file_hugepages 0", "nr_file_pmdmapped 0", "nr_anon_transparent_hugepages 40", "nr_vmscan_write 2000",
    "nr_vmscan_immediate_reclaim 10", "nr_dirtied 9876543", "nr_written 9765432", "nr_kernel_misc_reclaimable 0",
    "nr_foll_pin_acquired 0", "nr_foll_pin_released 0", "nr_kernel_stack 16384", "nr_page_table_pages 9000",
    "nr_swapcached 1500", "nr_dirty_threshold 380000", "nr_dirty_background_threshold 190000",
    "pgpgin 123456789", "pgpgout 98765432", "pswpin 24000", "pswpout 48000", "pgalloc_dma 0",
    "pgalloc_dma32 1234567", "pgalloc_normal 987654321", "pgalloc_movable 0", "allocstall_dma 0",
    "allocstall_dma32 0", "allocstall_normal 12", "allocstall_movable 0", "pgskip_dma 0", "pgskip_dma32 0",
    "pgskip_normal 0", "pgskip_movable 0", "pgfree 990000000", "pgactivate 4567890", "pgdeactivate 345678",
    "pglazyfree 0", "pgfault 876543210", "pgmajfault 45678", "pglazyfreed 0", "pgrefill 456789",
    "pgreuse 3456789", "pgsteal_kswapd 567890", "pgsteal_direct 1234", "pgscan_kswapd 678901",
    "pgscan_direct 2345", "pgscan_direct_throttle 0", "pgscan_anon 12345", "pgscan_file 668901",
    "pgsteal_anon 2345", "pgsteal_file 566779", "zone_reclaim_failed 0", "pginodesteal 0",
    "slabs_scanned 123456", "kswapd_inodesteal 0", "kswapd_low_wmark_hit_quickly 10",
    "kswapd_high_wmark_hit_quickly 5", "pageoutrun 100", "pgrotated 1000", "drop_pagecache 0", "drop_slab 0",
    "oom_kill 2", "pgmigrate_success 0", "pgmigrate_fail 0", "compact_stall 0", "compact_fail 0",
    "compact_success 0", "htlb_buddy_alloc_success 0", "htlb_buddy_alloc_fail 0", "unevictable_pgs_culled 1024",
    "unevictable_pgs_scanned 0", "unevictable_pgs_rescued 0", "unevictable_pgs_mlocked 1024",
    "unevictable_pgs_munlocked 0", "unevictable_pgs_cleared 0", "unevictable_pgs_stranded 0",
    "thp_fault_alloc 4000", "thp_fault_fallback 10", "thp_collapse_alloc 300", "thp_split_page 5",
    "thp_zero_page_alloc 1", "balloon_inflate 0", "balloon_deflate 0", "balloon_migrate 0", "swap_ra 3000",
    "swap_ra_hit 2000", "direct_map_level2_splits 300", "direct_map_level3_splits 4", "nr_unstable 0",
)
VMSTAT_515 = "".join(f"{kv}\n" for kv in _VMSTAT_515_KEYS)
# 3.10 (RHEL 7): no node/zone split, no workingset_*_anon (refault counts were not split), pgscan per zone.
VMSTAT_310 = "".join(f"{kv}\n" for kv in (
    "nr_free_pages 1801234", "nr_alloc_batch 1234", "nr_inactive_anon 120000", "nr_active_anon 260000",
    "nr_inactive_file 700000", "nr_active_file 900000", "nr_unevictable 0", "nr_mlock 0", "nr_anon_pages 350000",
    "nr_mapped 120000", "nr_file_pages 1650000", "nr_dirty 300", "nr_writeback 0", "nr_slab_reclaimable 90000",
    "nr_slab_unreclaimable 40000", "nr_page_table_pages 9000", "nr_kernel_stack 1024", "nr_unstable 0",
    "nr_bounce 0", "nr_vmscan_write 0", "nr_vmscan_immediate_reclaim 0", "nr_writeback_temp 0",
    "nr_isolated_anon 0", "nr_isolated_file 0", "nr_shmem 50000", "nr_dirtied 9876543", "nr_written 9765432",
    "numa_hit 987654321", "numa_miss 0", "numa_foreign 0", "numa_interleave 4321", "numa_local 987654321",
    "numa_other 0", "workingset_refault 34567", "workingset_activate 2345", "workingset_nodereclaim 0",
    "nr_anon_transparent_hugepages 40", "nr_free_cma 0", "nr_dirty_threshold 380000",
    "nr_dirty_background_threshold 190000", "pgpgin 123456789", "pgpgout 98765432", "pswpin 2400",
    "pswpout 4800", "pgalloc_dma 0", "pgalloc_dma32 1234567", "pgalloc_normal 987654321", "pgalloc_movable 0",
    "pgfree 990000000", "pgactivate 4567890", "pgdeactivate 345678", "pgfault 876543210", "pgmajfault 45678",
    "pgrefill_dma 0", "pgrefill_dma32 0", "pgrefill_normal 456789", "pgrefill_movable 0",
    "pgsteal_kswapd_normal 567890", "pgsteal_direct_normal 1234", "pgscan_kswapd_normal 678901",
    "pgscan_direct_normal 2345", "pgscan_direct_throttle 0", "zone_reclaim_failed 0", "pginodesteal 0",
    "slabs_scanned 123456", "kswapd_inodesteal 0", "kswapd_low_wmark_hit_quickly 10",
    "kswapd_high_wmark_hit_quickly 5", "pageoutrun 100", "allocstall 12", "pgrotated 1000",
    "drop_pagecache 0", "drop_slab 0", "numa_pte_updates 0", "pgmigrate_success 0", "pgmigrate_fail 0",
    "compact_stall 0", "htlb_buddy_alloc_success 0", "unevictable_pgs_culled 0", "thp_fault_alloc 4000",
    "thp_fault_fallback 10", "thp_collapse_alloc 300", "thp_split 5", "thp_zero_page_alloc 1",
))

SWAPS_HDR = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"


def unified_ubuntu22(root: Path) -> None:
    """Pure v2 (kernel 5.15): container /system.slice/docker-abc.scope with memory.max 512 MiB, 200 MiB used,
    memory.swap.max 256 MiB with 10 MiB used; cpu.stat usage 30 s; plus a systemd-style container whose init
    sits in /machine.slice/ct2/init.scope (128 MiB there, 1 GiB on ct2: the init.scope level is pruned)."""
    ct = "sys/fs/cgroup/system.slice/docker-abc.scope"
    files = common_procs("4000.50 7000.00\n", 100000, caller_state="R")
    files.update({
        "proc/meminfo": MEMINFO_515,
        "proc/vmstat": VMSTAT_515,
        "sys/kernel/mm/transparent_hugepage/hpage_pmd_size": "2097152\n",
        "proc/swaps": SWAPS_HDR + "/dev/sda3                               partition\t2097148\t\t97148\t\t-2\n",
        "proc/self/mountinfo": PROC_MI + SYS_MI + V2_MI,
        "proc/4242/cgroup": "0::/system.slice/docker-abc.scope\n",
        "proc/4243/cgroup": "0::/system.slice/docker-abc.scope\n",
        "proc/100/cgroup": "0::/user.slice/user-0.slice/session-1.scope\n",
        "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        "sys/fs/cgroup/system.slice/memory.max": "max\n",
        "sys/fs/cgroup/system.slice/memory.swap.max": "max\n",
        f"{ct}/cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
        f"{ct}/memory.max": f"{512 * MiB}\n",
        f"{ct}/memory.current": f"{200 * MiB}\n",
        f"{ct}/memory.swap.max": f"{256 * MiB}\n",
        f"{ct}/memory.swap.current": f"{10 * MiB}\n",
        f"{ct}/memory.stat": v2_stat(anon=120 * MiB, file=70 * MiB, shmem=6 * MiB, active_anon=100 * MiB,
                                     inactive_anon=26 * MiB, active_file=40 * MiB, inactive_file=30 * MiB,
                                     slab_r=4 * MiB, slab_u=2 * MiB),
        f"{ct}/cpu.stat": "usage_usec 30000000\nuser_usec 20000000\nsystem_usec 10000000\n"
                          "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        f"{ct}/cpu.max": "max 100000\n",
        # vmstat: pgpgin/pgpgout from io.stat (kB of block I/O), oom_kill from memory.events
        f"{ct}/io.stat": "8:0 rbytes=104857600 wbytes=52428800 rios=2000 wios=800 dbytes=0 dios=0\n"
                         "8:16 rbytes=1048576 wbytes=0 rios=10 wios=0 dbytes=0 dios=0\n",
        f"{ct}/memory.events": "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n",
        f"{ct}/cgroup.procs": "4242\n4243\n",
        f"{ct}/cgroup.threads": "4242\n4243\n",
        # PSI (psi.rst): 5.15 prints "full" for cpu too (since 5.13; always zero at the system level).
        "proc/pressure/cpu": "some avg10=12.50 avg60=8.25 avg300=3.05 total=987654321\n"
                             "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        "proc/pressure/memory": "some avg10=0.40 avg60=0.20 avg300=0.10 total=5550000\n"
                                "full avg10=0.10 avg60=0.05 avg300=0.02 total=2220000\n",
        "proc/pressure/io": "some avg10=1.00 avg60=0.90 avg300=0.80 total=44400000\n"
                            "full avg10=0.50 avg60=0.45 avg300=0.40 total=33300000\n",
        f"{ct}/cpu.pressure": "some avg10=45.07 avg60=30.00 avg300=9.99 total=30000000\n"
                              "full avg10=20.01 avg60=10.00 avg300=3.33 total=12000000\n",
        f"{ct}/memory.pressure": "some avg10=0.00 avg60=0.01 avg300=0.00 total=1234\n"
                                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=567\n",
        # io.pressure deliberately absent for this group: the view must serve the host's /proc/pressure/io.
        # systemd container: init in ct2/init.scope
        "proc/5252/status": status(5252, 5200, (5252, 1), "systemd"),
        "proc/5252/stat": stat(5252, 5200, 300000, "systemd"),
        "proc/5252/cgroup": "0::/machine.slice/ct2/init.scope\n",
        "proc/5253/status": status(5253, 5252, (5253, 40), "bash"),
        "proc/5253/stat": stat(5253, 5252, 300100, "bash"),
        "proc/5253/cgroup": "0::/machine.slice/ct2/system.slice/foo.service\n",
        "sys/fs/cgroup/machine.slice/memory.max": "max\n",
        "sys/fs/cgroup/machine.slice/ct2/memory.max": f"{GiB}\n",
        "sys/fs/cgroup/machine.slice/ct2/memory.current": f"{100 * MiB}\n",
        "sys/fs/cgroup/machine.slice/ct2/memory.swap.max": "0\n",
        "sys/fs/cgroup/machine.slice/ct2/memory.swap.current": "0\n",
        "sys/fs/cgroup/machine.slice/ct2/memory.stat": v2_stat(50 * MiB, 40 * MiB, 0, 30 * MiB, 20 * MiB,
                                                               25 * MiB, 15 * MiB, MiB, MiB),
        "sys/fs/cgroup/machine.slice/ct2/cpu.stat": "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n",
        "sys/fs/cgroup/machine.slice/ct2/init.scope/memory.max": f"{128 * MiB}\n",
        "sys/fs/cgroup/machine.slice/ct2/init.scope/memory.current": f"{10 * MiB}\n",
        "MANIFEST.toml": manifest(
            "x86_64-unified-ubuntu22", "5.15.0-91-generic", "Ubuntu 22.04", "unified",
            "container /system.slice/docker-abc.scope: memory.max 512 MiB, memory.current 200 MiB, swap.max "
            "256 MiB, swap.current 10 MiB, cpu.stat usage 30 s, init started at 100000 ticks; systemd container "
            "init 5252 in /machine.slice/ct2/init.scope (ct2: 1 GiB, swap.max 0; init.scope 128 MiB, pruned)",
            'memory_cgroup = "/system.slice/docker-abc.scope"\n'),
    })
    write(root, files)


def legacy_centos7(root: Path) -> None:
    """Pure v1 (kernel 3.10, RHEL 7 style) with a combined cpu,cpuacct hierarchy; container /docker/ct1:
    limit 1 GiB, memsw 1.5 GiB, usage 300 MiB, memsw usage 320 MiB (-> 20 MiB swapped), swappiness 60."""
    mem = "sys/fs/cgroup/memory/docker/ct1"
    cpu = "sys/fs/cgroup/cpu,cpuacct/docker/ct1"
    files = v1_host("/docker/ct1", "86400.00 150000.00\n", 8000000, MEMINFO_310, VMSTAT_310,
                    "/dev/dm-1                               partition\t4194300\t0\t-1\n")
    files.update(v1_memory(mem, GiB, 300 * MiB, (GiB + 512 * MiB, 320 * MiB),
                           v1_stat(rss=200 * MiB, cache=90 * MiB, shmem=10 * MiB, active_anon=150 * MiB,
                                   inactive_anon=60 * MiB, active_file=50 * MiB, inactive_file=30 * MiB,
                                   hier_mem=GiB, hier_memsw=GiB + 512 * MiB)))
    files.update({
        "sys/fs/cgroup/memory/docker/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/docker/memory.memsw.limit_in_bytes": "9223372036854771712\n",
        f"{cpu}/cpuacct.usage": "120000000000\n",
        f"{cpu}/cpu.cfs_quota_us": "-1\n",
        f"{cpu}/cpu.cfs_period_us": "100000\n",
        f"{cpu}/tasks": "4242\n4243\n",
        f"{cpu}/cgroup.procs": "4242\n4243\n",
        "MANIFEST.toml": manifest(
            "x86_64-legacy-centos7", "3.10.0-1160.el7.x86_64", "CentOS Linux 7", "legacy",
            "pure v1; cpu and cpuacct co-mounted at /sys/fs/cgroup/cpu,cpuacct; container /docker/ct1: limit "
            "1 GiB, memsw 1.5 GiB, usage 300 MiB, memsw usage 320 MiB, cpuacct.usage 120 s, init start "
            "8000000 ticks, host uptime 86400 s",
            'memory_cgroup = "/docker/ct1"\n'),
    })
    write(root, files)


def legacy_noswapacct(root: Path) -> None:
    """Pure v1 booted with swapaccount=0: no memory.memsw.* files and no hierarchical_memsw_limit line, while
    the host has 1 GiB of swap; container /lxc/c2 limited to 256 MiB, 64 MiB used. Swap must show 0."""
    mem = "sys/fs/cgroup/memory/lxc/c2"
    meminfo = MEMINFO_310.replace("SwapTotal:       4194300 kB", "SwapTotal:       1048572 kB").replace(
        "SwapFree:        4194300 kB", "SwapFree:        1048572 kB")
    files = v1_host("/lxc/c2", "1000.00 1900.00\n", 20000, meminfo, VMSTAT_515,
                    "/swapfile                               file\t\t1048572\t0\t-2\n")
    files.update(v1_memory(mem, 256 * MiB, 64 * MiB, None,
                           v1_stat(rss=40 * MiB, cache=20 * MiB, shmem=0, active_anon=30 * MiB,
                                   inactive_anon=10 * MiB, active_file=12 * MiB, inactive_file=8 * MiB,
                                   hier_mem=256 * MiB, hier_memsw=None)))
    files.update({
        "sys/fs/cgroup/memory/lxc/memory.limit_in_bytes": "9223372036854771712\n",
        "MANIFEST.toml": manifest(
            "x86_64-legacy-noswapacct", "4.19.0-25-amd64 (swapaccount=0)", "Debian 10", "legacy",
            "swap accounting off: no memory.memsw.* files; host swap 1 GiB; container /lxc/c2 256 MiB, 64 MiB "
            "used", 'memory_cgroup = "/lxc/c2"\n'),
    })
    write(root, files)


def unified_ancestorlimit(root: Path) -> None:
    """Pure v2 (kernel 6.1): container /a/b/c with memory.max "max" at c and b, 1 GiB only at a; swap max
    everywhere (host swap 2 GiB shows whole); plus /nomem whose parent does not enable the memory controller
    (no memory.* files at all: the view must fall back to the host file)."""
    files = common_procs("500.00 900.00\n", 10000)
    files.update({
        "proc/meminfo": MEMINFO_515,
        "proc/vmstat": VMSTAT_515,
        "proc/swaps": SWAPS_HDR + "/dev/sda3                               partition\t2097148\t\t97148\t\t-2\n",
        "proc/self/mountinfo": PROC_MI + SYS_MI + V2_MI,
        "proc/4242/cgroup": "0::/a/b/c\n",
        "proc/4243/cgroup": "0::/a/b/c\n",
        "proc/100/cgroup": "0::/\n",
        "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
        "sys/fs/cgroup/a/memory.max": f"{GiB}\n",
        "sys/fs/cgroup/a/memory.swap.max": "max\n",
        "sys/fs/cgroup/a/b/memory.max": "max\n",
        "sys/fs/cgroup/a/b/memory.swap.max": "max\n",
        "sys/fs/cgroup/a/b/c/memory.max": "max\n",
        "sys/fs/cgroup/a/b/c/memory.swap.max": "max\n",
        "sys/fs/cgroup/a/b/c/memory.current": f"{300 * MiB}\n",
        "sys/fs/cgroup/a/b/c/memory.swap.current": f"{MiB}\n",
        "sys/fs/cgroup/a/b/c/memory.stat": v2_stat(200 * MiB, 90 * MiB, 0, 150 * MiB, 50 * MiB, 60 * MiB,
                                                   30 * MiB, 2 * MiB, MiB),
        "sys/fs/cgroup/a/b/c/cpu.stat": "usage_usec 100000000\nuser_usec 60000000\nsystem_usec 40000000\n",
        # pid 6262: a container whose cgroup has no memory controller enabled
        "proc/6262/status": status(6262, 6200, (6262, 1)),
        "proc/6262/stat": stat(6262, 6200, 40000),
        "proc/6262/cgroup": "0::/nomem\n",
        "sys/fs/cgroup/nomem/cgroup.controllers": "pids\n",
        "sys/fs/cgroup/nomem/cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
        "MANIFEST.toml": manifest(
            "x86_64-unified-ancestorlimit", "6.1.0-18-amd64", "Debian 12", "unified",
            "container /a/b/c: memory.max max at c and b, 1 GiB at a; swap.max max everywhere; usage 300 MiB; "
            "pid 6262 in /nomem (memory controller not enabled: host fallback)", 'memory_cgroup = "/a/b/c"\n'),
    })
    write(root, files)


def legacy_nomemavail(root: Path) -> None:
    """A kernel without MemAvailable (before 3.14); v1 like centos7; container /docker/old: 512 MiB limit,
    100 MiB used, memsw == limit (no swap allowed). The view must not invent a MemAvailable line."""
    mem = "sys/fs/cgroup/memory/docker/old"
    files = v1_host("/docker/old", "2000.00 3000.00\n", 100000, MEMINFO_NO_AVAIL, VMSTAT_310,
                    "/dev/dm-1                               partition\t4194300\t0\t-1\n")
    files.update(v1_memory(mem, 512 * MiB, 100 * MiB, (512 * MiB, 100 * MiB),
                           v1_stat(rss=60 * MiB, cache=40 * MiB, shmem=0, active_anon=50 * MiB,
                                   inactive_anon=10 * MiB, active_file=25 * MiB, inactive_file=15 * MiB,
                                   hier_mem=512 * MiB, hier_memsw=512 * MiB)))
    files.update({
        "MANIFEST.toml": manifest(
            "x86_64-legacy-nomemavail", "3.10 (synthetic: meminfo without MemAvailable as before 3.14; NSpid "
            "lines kept so resolution works)", "synthetic", "legacy",
            "container /docker/old 512 MiB, memsw 512 MiB (no swap), 100 MiB used",
            'memory_cgroup = "/docker/old"\n'),
    })
    write(root, files)


HOSTS = {
    "x86_64-unified-ubuntu22": unified_ubuntu22,
    "x86_64-legacy-centos7": legacy_centos7,
    "x86_64-legacy-noswapacct": legacy_noswapacct,
    "x86_64-unified-ancestorlimit": unified_ancestorlimit,
    "x86_64-legacy-nomemavail": legacy_nomemavail,
}


def main(argv: list[str]) -> int:
    """Write every synthetic host under argv[0]."""
    if len(argv) != 1:
        print("usage: make_synthetic_fixtures.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for host_id, fn in HOSTS.items():
        fn(out / host_id)
        print(f"wrote {out / host_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
