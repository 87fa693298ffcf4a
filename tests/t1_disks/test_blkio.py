"""cgroups/blkio.py and parse/blkio.py: v1 CFQ recursive, BFQ, throttle (recursive and flat), v2 io.stat,
and the missing/malformed matrix. Expected numbers are read off the fixture files by hand."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pylxcfs.cgroups.blkio import IoCounters, io_counters
from pylxcfs.context import CgroupDir
from pylxcfs.errors import CgroupUnavailable, ParseError
from pylxcfs.parse.blkio import parse_blkio_rwstat, parse_io_stat

from .conftest import fixture_ctx


def _blkio(host: str) -> CgroupDir:
    cg = fixture_ctx(host).blkio
    assert cg is not None
    return cg


def test_cfq_recursive_files() -> None:
    c = io_counters(_blkio("x86_64-legacy-centos7-disks"))
    assert set(c) == {(8, 0), (8, 16), (8, 32)}
    sda = c[(8, 0)]
    assert (sda.reads, sda.writes, sda.read_merged, sda.write_merged) == (120, 340, 3, 44)
    assert (sda.read_bytes, sda.write_bytes) == (1966080, 5570560)
    assert sda.read_time_ns == 250000000 + 50000000  # service + wait
    assert sda.write_time_ns == 1200500000 + 300000000
    assert sda.io_time_ns == 1450500000  # service time Total
    assert sda.source == "blkio.io_serviced_recursive"


def test_throttle_recursive_preferred_over_flat_and_bfq_per_device() -> None:
    c = io_counters(_blkio("x86_64-hybrid-debian12-disks"))
    # 7:0: throttle recursive (13 I/Os) beats bfq (1) and the flat throttle file (2) is not used.
    assert (c[(7, 0)].reads, c[(7, 0)].writes, c[(7, 0)].source) == (10, 3, "blkio.throttle.io_serviced_recursive")
    # 7:1: bfq saw 26 I/Os, throttle 3: bfq wins for this device.
    assert (c[(7, 1)].reads, c[(7, 1)].write_bytes, c[(7, 1)].source) == (20, 24576, "blkio.bfq.io_serviced_recursive")
    assert (c[(254, 0)].discards, c[(254, 0)].discard_bytes) == (2, 1048576)
    assert c[(254, 0)].read_time_ns == 0 and c[(254, 0)].io_time_ns == 0  # throttle has no times


def _copy_cg(tmp_path: Path, host: str, keep: tuple[str, ...]) -> CgroupDir:
    src = Path(_blkio(host).path)
    dst = tmp_path / "cg"
    dst.mkdir()
    for name in keep:
        shutil.copy(src / name, dst / name)
    return CgroupDir(path=str(dst), v2=False, mount_root=str(tmp_path))


def test_flat_throttle_files_when_recursive_absent(tmp_path: Path) -> None:
    # Kernels before the _recursive throttle files: only the flat ones exist.
    flat = ("blkio.throttle.io_serviced", "blkio.throttle.io_service_bytes")
    cg = _copy_cg(tmp_path, "x86_64-hybrid-debian12-disks", flat)
    c = io_counters(cg)
    want = IoCounters(reads=1, read_bytes=4096, writes=1, write_bytes=4096, source="blkio.throttle.io_serviced")
    assert c == {(7, 0): want}


def test_cfq_without_optional_time_files(tmp_path: Path) -> None:
    keep = ("blkio.io_serviced_recursive", "blkio.io_service_bytes_recursive")
    cg = _copy_cg(tmp_path, "x86_64-legacy-centos7-disks", keep)
    c = io_counters(cg)[(8, 32)]
    assert (c.reads, c.writes, c.read_bytes, c.read_merged, c.read_time_ns, c.io_time_ns) == (55, 21, 225280, 0, 0, 0)


def test_serviced_without_bytes_is_not_a_source(tmp_path: Path) -> None:
    cg = _copy_cg(tmp_path, "x86_64-legacy-centos7-disks", ("blkio.io_serviced_recursive",))
    with pytest.raises(CgroupUnavailable):
        io_counters(cg)


def test_no_statistics_files(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable) as ei:
        io_counters(CgroupDir(path=str(tmp_path), v2=False, mount_root=str(tmp_path)))
    assert str(tmp_path) in str(ei.value)


def test_v2_io_stat() -> None:
    c = io_counters(_blkio("x86_64-unified-ubuntu20"))
    assert set(c) == {(259, 0), (252, 0), (252, 16)}
    vdb = c[(252, 0)]
    assert (vdb.reads, vdb.writes, vdb.discards) == (1000, 250, 4)
    assert (vdb.read_bytes, vdb.write_bytes, vdb.discard_bytes) == (4096000, 1024000, 2097152)
    assert vdb.read_merged == 0 and vdb.read_time_ns == 0 and vdb.source == "io.stat"


def test_v2_io_stat_missing(tmp_path: Path) -> None:
    with pytest.raises(CgroupUnavailable):
        io_counters(CgroupDir(path=str(tmp_path), v2=True, mount_root=str(tmp_path)))


def test_v2_empty_io_stat_means_no_devices(tmp_path: Path) -> None:
    (tmp_path / "io.stat").write_text("")
    assert io_counters(CgroupDir(path=str(tmp_path), v2=True, mount_root=str(tmp_path))) == {}


def test_rwstat_this_machines_root_blkio() -> None:
    # Live kernel format check: the root blkio cgroup's throttle file ("Total 0" when nothing is throttled).
    with open("/sys/fs/cgroup/blkio/blkio.throttle.io_serviced") as f:
        parse_blkio_rwstat(f.read(), "blkio.throttle.io_serviced")


@pytest.mark.parametrize("bad", ["8:0 Read\n", "8-0 Read 1\n", "8:0 Read x\n", "8:0 Read 1 2\n"])
def test_rwstat_malformed(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_blkio_rwstat("8:0 Write 1\n" + bad, "f")


@pytest.mark.parametrize("bad", ["8:0 rbytes\n", "8:0 rbytes=x\n", "x:0 rbytes=1\n"])
def test_io_stat_malformed(bad: str) -> None:
    with pytest.raises(ParseError):
        parse_io_stat(bad, "io.stat")


def test_io_stat_optional_non_integer_keys_skipped() -> None:
    line = "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0 cost.vrate=100.00 use_delay=0\n"
    got = parse_io_stat(line, "io.stat")
    assert got == {(8, 0): {"rbytes": 1, "wbytes": 2, "rios": 3, "wios": 4, "dbytes": 0, "dios": 0, "use_delay": 0}}
