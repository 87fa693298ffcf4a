"""The speed caches of the render path (issue 5) return exactly what the uncached code returns, and stay fresh
within their documented bounds: views/diskstats.py HostLayoutCache (host device list, <= 1 s) and
MissingFileCache (absent statistics files, <= 1 s). A fake clock drives expiry; the oracle is the plain parser
over the same text, on every fixture host's real /proc/diskstats capture."""

from __future__ import annotations

from pathlib import Path

import pytest

from pylxcfs.parse.diskstats import parse_diskstats
from pylxcfs.views.diskstats import HostLayoutCache, MissingFileCache

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DISKSTATS = sorted(FIXTURES.glob("*/*/proc/diskstats"))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_there_are_fixture_diskstats() -> None:
    assert len(DISKSTATS) >= 3


@pytest.mark.parametrize("path", DISKSTATS, ids=lambda p: p.parts[-3])
def test_layout_cache_equals_plain_parse_for_every_wanted_set(path: Path) -> None:
    text = path.read_text()
    devs = [ln.dev for ln in parse_diskstats(text)]
    wanted_sets = [set(), {devs[0]}, set(devs), set(devs[::2]), {devs[-1], (999, 999)}]
    clock = Clock()
    reads: list[int] = []

    def read_text() -> str:
        reads.append(1)
        return text

    cache = HostLayoutCache(ttl_s=1.0, clock=clock)
    for _ in range(2):  # second pass: memoized parses
        for wanted in wanted_sets:
            assert cache.lines(read_text, wanted) == parse_diskstats(text, wanted=wanted)
    assert len(reads) == 1  # within the TTL the host file is read once


def test_layout_cache_rereads_after_ttl_and_shows_a_new_disk() -> None:
    before = "   8       0 sda 1 0 8 0 0 0 0 0 0 0 0\n"
    after = before + "   8      16 sdb 2 0 16 0 0 0 0 0 0 0 0\n"
    texts = [before, after]
    clock = Clock()
    cache = HostLayoutCache(ttl_s=1.0, clock=clock)
    wanted = {(8, 0), (8, 16)}
    assert [ln.name for ln in cache.lines(lambda: texts[0], wanted)] == ["sda"]
    clock.t += 0.999
    assert [ln.name for ln in cache.lines(lambda: texts[1], wanted)] == ["sda"]  # still within 1 s
    clock.t += 0.001
    assert [ln.name for ln in cache.lines(lambda: texts[1], wanted)] == ["sda", "sdb"]


def test_layout_cache_keeps_parse_errors() -> None:
    bad = "   8       0 sda 1 2 3 4 5\n"  # 5 counters: no kernel prints that
    cache = HostLayoutCache(clock=Clock())
    for _ in range(2):
        with pytest.raises(Exception, match="unexpected field count"):
            cache.lines(lambda: bad, {(8, 0)})
    assert cache.lines(lambda: bad, {(9, 9)}) == ()  # the line is not examined when not wanted, as before


def test_missing_file_cache_reads_existing_files_every_time(tmp_path: Path) -> None:
    f = tmp_path / "blkio.throttle.io_serviced_recursive"
    f.write_text("Total 0\n")
    calls: list[str] = []

    def read(p: str) -> bytes:
        calls.append(p)
        return Path(p).read_bytes()

    clock = Clock()
    miss = MissingFileCache(read, ttl_s=1.0, clock=clock)
    assert miss.read(str(f)) == b"Total 0\n"
    f.write_text("8:0 Read 1\nTotal 1\n")
    assert miss.read(str(f)) == b"8:0 Read 1\nTotal 1\n"  # content is never cached
    assert len(calls) == 2


def test_missing_file_cache_remembers_absence_for_ttl_only(tmp_path: Path) -> None:
    f = tmp_path / "blkio.io_serviced_recursive"
    calls: list[str] = []

    def read(p: str) -> bytes:
        calls.append(p)
        return Path(p).read_bytes()

    clock = Clock()
    miss = MissingFileCache(read, ttl_s=1.0, clock=clock)
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            miss.read(str(f))
    assert len(calls) == 1
    f.write_text("Total 0\n")  # e.g. an I/O scheduler with a blkcg policy was loaded
    clock.t += 0.5
    with pytest.raises(FileNotFoundError):
        miss.read(str(f))
    clock.t += 0.5
    assert miss.read(str(f)) == b"Total 0\n"
    assert len(calls) == 2


def test_missing_file_cache_is_bounded() -> None:
    def read(p: str) -> bytes:
        raise FileNotFoundError(2, "no", p)

    miss = MissingFileCache(read, max_paths=8, clock=Clock())
    for i in range(100):
        with pytest.raises(FileNotFoundError):
            miss.read(f"/nonexistent/{i}")
    assert len(miss._missing) <= 8


def test_missing_file_cache_does_not_remember_a_removed_directory(tmp_path: Path) -> None:
    # A container's cgroup removed and recreated at the same path (restart) must be read again at once.
    cg = tmp_path / "ct"
    f = cg / "blkio.throttle.io_serviced_recursive"
    calls: list[str] = []

    def read(p: str) -> bytes:
        calls.append(p)
        return Path(p).read_bytes()

    miss = MissingFileCache(read, ttl_s=1.0, clock=Clock())
    with pytest.raises(FileNotFoundError):
        miss.read(str(f))  # the directory does not exist (yet/anymore)
    cg.mkdir()
    f.write_text("Total 0\n")
    assert miss.read(str(f)) == b"Total 0\n"  # same clock instant: nothing was remembered
    assert len(calls) == 2
