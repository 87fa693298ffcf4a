"""Tier 4 (issue 9 item 5): the workers are forked from one pre-imported zygote per generation and share its
memory; a SIGHUP starts a new zygote from the code on disk.

"Shares its memory" is checked on the physical pages, independently of our own accounting: /proc/PID/pagemap
(read as root) gives the page frame behind each virtual page, and a worker forked from the zygote has the very
frames of the zygote's heap at the same addresses (copy-on-write, never written since), where an exec'd worker
shares no anonymous page with anybody."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import pylxcfs
from support.fusedaemon import (
    Daemon,
    alive,
    children,
    cmdline,
    find_watchdog,
    make_fixture_root,
    start_daemon,
    wait_for,
)

pytestmark = [pytest.mark.root, pytest.mark.fuse, pytest.mark.slow]

PAGE = os.sysconf("SC_PAGE_SIZE")
MAIN = "import sys; from pylxcfs.cli import main; sys.exit(main())"
SHARED_MIN_PAGES = 256  # 1 MiB of 4 KiB pages: the zygote's heap holds several MB of imported modules


def zygotes(d: Daemon) -> list[int]:
    return [c for c in children(d.pid) if "pylxcfs.fuse.zygote" in cmdline(c).split() and alive(c)]


def heap(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        if line.endswith("[heap]"):
            lo, hi = line.split()[0].split("-")
            return int(lo, 16), int(hi, 16)
    raise AssertionError(f"no [heap] in /proc/{pid}/maps")


def frames(pid: int, lo: int, hi: int) -> dict[int, int]:
    """virtual page address -> page frame number, for the present pages of [lo, hi)."""
    out = {}
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(lo // PAGE * 8)
        raw = f.read((hi - lo) // PAGE * 8)
    for i, (e,) in enumerate(struct.iter_unpack("=Q", raw)):
        if e >> 63 and e & ((1 << 55) - 1):  # present, and a frame number (root sees it)
            out[lo + i * PAGE] = e & ((1 << 55) - 1)
    return out


def shared_heap_pages(a: int, b: int) -> int:
    """Pages of a's heap that are the same physical frames at the same addresses in b."""
    fa, fb = frames(a, *heap(a)), frames(b, *heap(b))
    return sum(1 for addr, pfn in fa.items() if fb.get(addr) == pfn)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    # The zygote stays (it is let go 5 s after its generation serves in full by default: the last test here).
    d = start_daemon(tmp_path, "--workers", "2", "--zygote-linger", "3600", "--host-root",
                     str(make_fixture_root(tmp_path)))
    try:
        yield d
    finally:
        d.stop()


def test_workers_are_forked_from_the_zygote_and_share_its_pages(daemon: Daemon) -> None:
    wait_for(lambda: len(daemon.workers()) == 2 and len(zygotes(daemon)) == 1, 10, "two workers and a zygote")
    (z,) = zygotes(daemon)
    workers = daemon.workers()
    (daemon.mnt / "proc/meminfo").read_text()  # every worker may have served by now: still shared
    for w in workers:
        # the supervisor's own child (re-parented from the zygote's double fork), named like an exec'd worker
        assert Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(daemon.pid)
        argv = cmdline(w).split()
        assert argv[1:3] == ["-m", "pylxcfs.fuse.worker"] and str(daemon.mnt) in argv
        assert shared_heap_pages(w, z) >= SHARED_MIN_PAGES, (w, z)
    # the control: the supervisor (not forked from the zygote) shares none of the zygote's heap
    assert shared_heap_pages(daemon.pid, z) == 0
    # the zygote never serves and holds no descriptor a worker gets per fork (readiness pipe, stats page)
    fds = {os.readlink(f"/proc/{z}/fd/{fd}") for fd in os.listdir(f"/proc/{z}/fd")}
    assert not any("pylxcfs-worker-stats" in t for t in fds), fds
    for w in workers:  # and a worker keeps no end of the zygote's control socket: its one socket is its inbox
        links = [os.readlink(f"/proc/{w}/fd/{fd}") for fd in os.listdir(f"/proc/{w}/fd")]
        assert sum(t.startswith("socket:") for t in links) == 1, links


def test_worker_crash_is_replaced_by_a_fork_of_the_same_zygote(daemon: Daemon) -> None:
    wait_for(lambda: len(daemon.workers()) == 2 and len(zygotes(daemon)) == 1, 10, "two workers and a zygote")
    (z,) = zygotes(daemon)
    old = daemon.workers()
    os.kill(old[0], signal.SIGKILL)
    seen: list[int] = []

    def replaced() -> bool:  # one scan per try: two scans may disagree while the supervisor's children change
        seen[:] = daemon.workers()
        return len(seen) == 2 and old[0] not in seen and len(set(seen) - set(old)) == 1

    wait_for(replaced, 10, "a replacement worker")
    (new,) = set(seen) - set(old)
    assert zygotes(daemon) == [z]
    assert shared_heap_pages(new, z) >= SHARED_MIN_PAGES
    assert "died (signal 9)" in daemon.log_text()


def test_sighup_starts_a_new_zygote_from_the_code_on_disk(tmp_path: Path) -> None:
    """The daemon runs from a copy of the package; after it started, the copy's worker is changed to log a
    marker. After SIGHUP the new generation's zygote is a new process and its workers run the changed code."""
    pkg = tmp_path / "pkg"
    shutil.copytree(Path(pylxcfs.__file__).parent, pkg / "pylxcfs", ignore=shutil.ignore_patterns("__pycache__"))
    mnt, pidfile, log = tmp_path / "d-mnt", tmp_path / "d.pid", tmp_path / "d.log"
    env = dict(os.environ, PYTHONPATH=str(pkg), PYTHONDONTWRITEBYTECODE="1")
    with open(log, "ab") as lf:
        proc = subprocess.Popen([sys.executable, "-c", MAIN, "-f", "--pidfile", str(pidfile), "--workers", "2",
                                 "--zygote-linger", "3600", "--host-root", str(make_fixture_root(tmp_path)), str(mnt)],
                                stdout=lf, stderr=lf, stdin=subprocess.DEVNULL, env=env)
    d = Daemon(proc, mnt, pidfile, log)
    try:
        wait_for(lambda: len(d.workers()) == 2 and len(zygotes(d)) == 1 and "ready in" in d.log_text(), 30,
                 "the first generation")
        d.watchdog = find_watchdog(mnt, pidfile, proc.pid)
        (z0,) = zygotes(d)
        gen0 = set(d.workers())
        src = pkg / "pylxcfs/fuse/worker.py"
        text = src.read_text()
        assert 'log.info("serving")' in text
        src.write_text(text.replace('log.info("serving")', 'log.info("serving (code marker 9-5)")'))
        assert "code marker 9-5" not in d.log_text()
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(lambda: len(d.workers()) == 2 and not gen0 & set(d.workers()), 30, "the new generation")
        wait_for(lambda: zygotes(d) and z0 not in zygotes(d), 10, "the old zygote let go")
        (z1,) = zygotes(d)
        assert not alive(z0)
        for w in d.workers():
            assert shared_heap_pages(w, z1) >= SHARED_MIN_PAGES
        assert d.log_text().count("serving (code marker 9-5)") >= 2  # both new workers run the code on disk
        assert (mnt / "proc/meminfo").read_text()
    finally:
        d.stop()


def test_zygote_is_let_go_once_the_pool_serves_and_a_crash_starts_a_new_one(tmp_path: Path) -> None:
    """Default behaviour: the zygote ends once every worker serves (its pages, copied by the workers under load,
    would stay its own); a worker that dies later is replaced by a fork of a NEW zygote, and reads go on."""
    d = start_daemon(tmp_path, "--workers", "2", "--zygote-linger", "0.5", "--host-root",
                     str(make_fixture_root(tmp_path)))
    try:
        wait_for(lambda: len(d.workers()) == 2, 30, "two workers")
        wait_for(lambda: not zygotes(d) and "let go: generation 0 serves in full" in d.log_text(), 30,
                 "the zygote let go")
        before = (d.mnt / "proc/meminfo").read_text()
        old = d.workers()
        os.kill(old[0], signal.SIGKILL)
        seen: list[int] = []

        def replaced() -> bool:
            seen[:] = d.workers()
            return len(seen) == 2 and old[0] not in seen
        wait_for(replaced, 30, "a replacement worker")
        assert d.log_text().count("started zygote") == 2
        for _ in range(20):
            assert (d.mnt / "proc/meminfo").read_text() == before
        wait_for(lambda: not zygotes(d), 30, "the second zygote let go too")
    finally:
        d.stop()
