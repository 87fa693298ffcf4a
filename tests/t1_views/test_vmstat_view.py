"""/proc/vmstat through the production path (Renderer over fixture trees, real resolver), plus the pure rules.

Independent expectations: the numbers below are worked out by hand from the fixture's cgroup files
(tools/make_synthetic_fixtures.py writes them; the hybrid host's are a real capture, read here with a mapping of
our own): sizes in bytes / 4096 (x86_64 pages), kernel stack in kB, pgpgin/pgpgout = kB of block I/O from io.stat,
never v1 memory.stat's page-charge counters. Lines the cgroup cannot supply: 0 where the host's value is 0, left
out otherwise (docs/pressure-vmstat.md).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pylxcfs.hostfs import HostRoot
from pylxcfs.service import Renderer, ViewOptions
from pylxcfs.views.vmstat import container_counters, render_vmstat

from .conftest import HOSTS

MiB = 1 << 20
PAGE = 4096


def _kv(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        k, v = line.split(" ")
        out[k] = int(v)
    return out


def _render(host: str | Path, caller: int = 4243) -> tuple[str, Renderer]:
    root = host if isinstance(host, Path) else HOSTS / host
    r = Renderer(HostRoot.from_dir(root), ViewOptions())
    return r.render("proc/vmstat", caller).decode(), r


@pytest.fixture(autouse=True)
def _x86_pages() -> None:
    assert os.sysconf("SC_PAGE_SIZE") == PAGE, "the expectations below are in 4 KiB pages"


def test_pure_v2_container_values() -> None:
    out, r = _render("x86_64-unified-ubuntu22")
    assert not r.fallbacks, r.fallbacks
    got = _kv(out)
    # docker-abc.scope: memory.stat of v2_stat(anon=120 MiB, file=70 MiB, shmem=6 MiB, active_anon=100 MiB,
    # inactive_anon=26 MiB, active_file=40 MiB, inactive_file=30 MiB, slab 4+2 MiB), file_mapped 8 MiB, dirty
    # 4096 B, kernel_stack 98304 B, pagetables 401408 B, anon_thp 2 MiB, pgfault 12345, pgmajfault 3; io.stat
    # 100 MiB + 1 MiB read, 50 MiB written; memory.events oom_kill 1; MemFree 512 - 200 MiB.
    expected = {
        "nr_anon_pages": 120 * MiB // PAGE, "nr_file_pages": 70 * MiB // PAGE, "nr_shmem": 6 * MiB // PAGE,
        "nr_mapped": 8 * MiB // PAGE, "nr_dirty": 1, "nr_writeback": 0, "nr_zone_write_pending": 1,
        "nr_active_anon": 100 * MiB // PAGE, "nr_zone_active_anon": 100 * MiB // PAGE,
        "nr_inactive_anon": 26 * MiB // PAGE, "nr_zone_inactive_anon": 26 * MiB // PAGE,
        "nr_active_file": 40 * MiB // PAGE, "nr_inactive_file": 30 * MiB // PAGE,
        "nr_slab_reclaimable": 4 * MiB // PAGE, "nr_slab_unreclaimable": 2 * MiB // PAGE,
        "nr_kernel_stack": 96, "nr_page_table_pages": 98, "nr_anon_transparent_hugepages": 1,
        "pgfault": 12345, "pgmajfault": 3, "workingset_refault_file": 0,
        "pgpgin": 101 * 1024, "pgpgout": 50 * 1024, "oom_kill": 1, "nr_free_pages": 312 * MiB // PAGE,
    }
    assert {k: got.get(k) for k in expected} == expected
    host = _kv((HOSTS / "x86_64-unified-ubuntu22/proc/vmstat").read_text())
    # Host lines with no cgroup counterpart: left out when the host's value is not 0, "0" when it is.
    for k in ("numa_hit", "pgalloc_normal", "pgfree", "pswpin", "pswpout", "nr_dirty_threshold",
              "nr_dirty_background_threshold"):
        assert host[k] != 0 and k not in got, k
    assert got["numa_miss"] == 0 and got["balloon_inflate"] == 0
    # Every line is a host line, in the host's order.
    assert list(got) == [k for k in host if k in got]


def test_hybrid_capture_from_v1_memory_stat() -> None:
    host_id = "x86_64-hybrid-debian12"
    out, r = _render(host_id)
    assert not r.fallbacks, r.fallbacks
    got = _kv(out)
    st = _kv((HOSTS / host_id / "sys/fs/cgroup/memory/lxc/ct/memory.stat").read_text())
    # v1: the hierarchical total_* half; cache/rss/mapped_file/dirty are v2's file/anon/file_mapped/file_dirty.
    assert got["nr_file_pages"] == st["total_cache"] // PAGE
    assert got["nr_anon_pages"] == st["total_rss"] // PAGE
    assert got["nr_mapped"] == st["total_mapped_file"] // PAGE
    assert got["nr_dirty"] == st["total_dirty"] // PAGE
    assert got["nr_inactive_file"] == got["nr_zone_inactive_file"] == st["total_inactive_file"] // PAGE
    assert got["pgfault"] == st["total_pgfault"] and got["pgmajfault"] == st["total_pgmajfault"]
    assert got["workingset_refault_file"] == st["total_workingset_refault_file"]
    host = _kv((HOSTS / host_id / "proc/vmstat").read_text())
    assert got["pgfault"] < host["pgfault"]
    # v1 memory.stat pgpgin/pgpgout count page charges, not block I/O; blk-throttle accounts no device for this
    # group (no rule): the lines are left out (the host's are not 0), never taken from memory.stat.
    assert st["total_pgpgin"] > 0 and host["pgpgin"] > 0
    assert "pgpgin" not in got and "pgpgout" not in got
    assert got["pswpin"] == 0 == host["pswpin"]  # this host has no swap: the container's share of 0 is 0


def test_v1_blkio_counts_become_pgpgin(tmp_path: Path) -> None:
    root = tmp_path / "h"
    shutil.copytree(HOSTS / "x86_64-hybrid-debian12", root, symlinks=True)
    blk = root / "sys/fs/cgroup/blkio/lxc/ct"
    (blk / "blkio.throttle.io_serviced_recursive").write_text(
        "254:0 Read 10\n254:0 Write 4\n254:0 Sync 14\n254:0 Async 0\n254:0 Discard 0\n254:0 Total 14\nTotal 14\n")
    (blk / "blkio.throttle.io_service_bytes_recursive").write_text(
        "254:0 Read 409600\n254:0 Write 8192\n254:0 Sync 417792\n254:0 Async 0\n254:0 Discard 0\n"
        "254:0 Total 417792\nTotal 417792\n")
    got = _kv(_render(root)[0])
    assert (got["pgpgin"], got["pgpgout"]) == (400, 8)


def test_host_caller_gets_the_host_file() -> None:
    for host in ("x86_64-hybrid-debian12", "x86_64-unified-ubuntu22"):
        out, _ = _render(host, caller=100)
        assert out == (HOSTS / host / "proc/vmstat").read_text()


def test_malformed_memory_stat_serves_the_host_file(tmp_path: Path) -> None:
    root = tmp_path / "h"
    shutil.copytree(HOSTS / "x86_64-unified-ubuntu22", root, symlinks=True)
    (root / "sys/fs/cgroup/system.slice/docker-abc.scope/memory.stat").write_text("anon lots\n")
    out, r = _render(root)
    assert out == (root / "proc/vmstat").read_text()
    assert {reason for _p, reason in r.fallbacks} == {"ParseError"}


def test_swap_events_where_the_cgroup_keeps_them() -> None:
    # v2 memory.stat has pswpin/pswpout on newer kernels: then vmstat's si/so are the container's.
    mine = container_counters({"anon": 8192, "pswpin": 7, "pswpout": 9, "pgpgin": 5, "zswap": 1})
    assert mine["pswpin"] == 7 and mine["pswpout"] == 9 and mine["nr_anon_pages"] == 2
    assert "pgpgin" not in mine and "zswap" not in mine  # never from memory.stat
    text = render_vmstat({"nr_anon_pages": 5, "pswpin": 3, "pswpout": 0, "pgpgin": 4, "nr_bounce": 0,
                          "nr_dirty_threshold": 0}, mine)
    assert text == "nr_anon_pages 2\npswpin 7\npswpout 9\nnr_bounce 0\n"
