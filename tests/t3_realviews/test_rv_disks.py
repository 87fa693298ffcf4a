"""/proc/diskstats and /proc/partitions from a real v1 blkio cgroup that did real I/O.

On blk-mq kernels the v1 blkio statistics only count for a device the cgroup has a throttle rule on (or one
using bfq); virtual-files.md §6.9 "Measured on this machine kind". So the container gets a non-limiting rule
(1 TiB/s) on the disk holding the root filesystem, reads a 1 MiB file with O_DIRECT (64 KiB blocks: 16 reads
that bypass the page cache), and then reads our diskstats between two reads of its own cgroup counters.
Issue 2 / seed: the disk holding the container's root filesystem is shown as `sda`.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from support import pidns
from support.cgv1 import CgroupTree

from . import expect as ex
from .conftest import Mounted

pytestmark = [pytest.mark.root, pytest.mark.fuse]

BLOB_BYTES = 1 << 20
BLOCK = 64 << 10
HUGE_BPS = 1 << 40  # a rule that never throttles, only switches the statistics on


def _root_disk() -> tuple[int, int]:
    """major, minor of the whole disk holding "/" (the parent when "/" is on a partition)."""
    dev = os.stat("/").st_dev
    sysdir = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve()
    if (sysdir / "partition").exists():
        sysdir = sysdir.parent
    major, minor = (sysdir / "dev").read_text().split(":")
    return int(major), int(minor)


def _counters(text: str, dev: tuple[int, int]) -> dict[str, int]:
    """blkio '<maj>:<min> <Op> <n>' lines -> {Op: n} for one device."""
    key = f"{dev[0]}:{dev[1]}"
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == key:
            out[parts[1]] = int(parts[2])
    return out


def test_root_disk_io_shows_as_sda(cgtree: CgroupTree, ours: Mounted, rv_tmp: Path) -> None:
    disk = _root_disk()
    blob = rv_tmp / "blob"
    blob.write_bytes(os.urandom(BLOB_BYTES))
    if os.stat(blob).st_dev != os.stat("/").st_dev:
        pytest.fail(f"{blob} is not on the root filesystem; this test needs a tmp dir on /")
    cg = cgtree.child("disks", extra={("blkio", "blkio.throttle.read_bps_device"): f"{disk[0]}:{disk[1]} {HUGE_BPS}"})
    bdir = cg.dir("blkio")
    serviced = shlex.quote(str(bdir / "blkio.throttle.io_serviced_recursive"))
    sbytes = shlex.quote(str(bdir / "blkio.throttle.io_service_bytes_recursive"))
    stats = shlex.quote(str(ours.mnt / "proc/diskstats"))
    sep = "echo ----"
    script = "; ".join(
        [
            f"dd if={shlex.quote(str(blob))} of=/dev/null iflag=direct bs={BLOCK} status=none",
            f"cat {serviced}",
            sep,
            f"cat {sbytes}",
            sep,
            f"cat {stats}",
            sep,
            f"cat {serviced}",
            sep,
            f"cat {sbytes}",
        ]
    )
    out = pidns.run(["/bin/sh", "-c", script], cgroups=[cg]).stdout
    ios_b, bytes_b, view, ios_a, bytes_a = out.split("----\n")
    ib, ia = _counters(ios_b, disk), _counters(ios_a, disk)
    bb, ba = _counters(bytes_b, disk), _counters(bytes_a, disk)
    assert ib["Read"] >= BLOB_BYTES // BLOCK, f"the cgroup did not count the direct reads: {ios_b}"
    rows = [line.split() for line in view.splitlines() if line.strip()]
    root_rows = [r for r in rows if (int(r[0]), int(r[1])) == disk]
    assert len(root_rows) == 1, view
    row = root_rows[0]
    assert row[2] == "sda", f"root disk must be named sda: {row}"
    # iostats.rst: field 1 = reads completed, field 3 = sectors read (512 bytes); from io_serviced and
    # io_service_bytes, bracketed by the cgroup's own counters read just before and after.
    reads, sectors_read = int(row[3]), int(row[5])
    assert ib["Read"] <= reads <= ia["Read"], (row, ib, ia)
    assert bb["Read"] // 512 <= sectors_read <= ba["Read"] // 512, (row, bb, ba)
    assert len(row) == len(_host_row(disk)), "same column count as the host kernel's line"


def _host_row(disk: tuple[int, int]) -> list[str]:
    for line in ex.host_file("/proc/diskstats").splitlines():
        parts = line.split()
        if (int(parts[0]), int(parts[1])) == disk:
            return parts
    raise AssertionError(f"root disk {disk} missing from the host's /proc/diskstats")


def test_partitions_names_root_disk_sda(cgtree: CgroupTree, ours: Mounted) -> None:
    disk = _root_disk()
    cg = cgtree.child("partitions")
    r = pidns.read_files([ours.mnt / "proc/partitions"], cgroups=[cg])
    text = r[ours.mnt / "proc/partitions"]
    assert text.splitlines()[0].split() == ["major", "minor", "#blocks", "name"]
    host_blocks = {
        (int(p[0]), int(p[1])): int(p[2])
        for p in (ln.split() for ln in ex.host_file("/proc/partitions").splitlines()[2:])
        if p
    }
    rows = [ln.split() for ln in text.splitlines()[2:] if ln.strip()]
    root = [p for p in rows if (int(p[0]), int(p[1])) == disk]
    assert len(root) == 1 and root[0][3] == "sda", text
    assert int(root[0][2]) == host_blocks[disk], "size in 1 KiB blocks is the disk's own"
