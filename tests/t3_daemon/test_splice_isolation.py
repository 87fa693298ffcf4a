"""Tier 3: sendfile/splice readers (busybox `cat`) never see another container's bytes (the splice guard).

Since Linux 6.5 fs/fuse/file.c fuse_splice_read serves even FOPEN_DIRECT_IO files from the inode's page cache
(filemap_splice_read), and every container's bind mount of MNT/proc/meminfo pins the SAME inode: before the guard,
a busybox `cat` in a 512 MiB container showed a concurrent 1 GiB container's MemTotal in 5-10% of its reads, and a
short render (a 1-CPU cpuinfo) shrank i_size so a 2-CPU container's `cat` was cut. The worker now refuses page-cache
READs (no FUSE_READ_LOCKOWNER; see fuse/wire.py Dispatcher._read): sendfile fails with EINVAL and busybox falls back
to read(2), which is served per open. (Per-open FUSE passthrough cannot do this: fs/fuse/iomode.c allows one backing
file per inode while any passthrough open is alive; see docs/design-fuse.md.)

Expectations come from the limits the tests set (memory.limit_in_bytes, cpuset.cpus), the host's /proc and the
fixture tree, never from our own output. Real cgroups (v1), real pid and mount namespaces, the real busybox.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from support.cgv1 import CgroupTree, V1Cgroup
from support.fusedaemon import MEMINFO, Daemon, make_fixture_root, start_daemon
from support.pidns import container_argv

pytestmark = [pytest.mark.root, pytest.mark.fuse]

BUSYBOX = "/bin/busybox"
GIB = 1 << 30
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}


def _host_meminfo_kb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in the host's /proc/meminfo")


def _host_cpus() -> int:
    return sum(1 for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor"))


@pytest.fixture(params=["raw", "mfusepy"])
def host_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    """Our daemon serving the live host, with each back-end (both carry the guard)."""
    d = start_daemon(tmp_path, "--fuse-backend", request.param)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def cgroups() -> Iterator[CgroupTree]:
    tree = CgroupTree("splice")
    tree.create()
    try:
        yield tree
    finally:
        tree.destroy()


def _spawn(script: str, cgroups: Sequence[V1Cgroup], binds: Mapping[str, str], out: Path) -> subprocess.Popen[bytes]:
    """`sh -c script` as PID 1 of a new pid+mount namespace (binds applied inside it), its init born in `cgroups`."""
    procs = [str(p) for cg in cgroups for p in cg.procs_files()]

    def enter() -> None:  # before exec: the namespace's init is created inside the cgroups
        for f in procs:
            fd = os.open(f, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

    with open(out, "wb") as f:
        return subprocess.Popen(container_argv(["/bin/sh", "-c", script], binds), preexec_fn=enter, env=ENV,
                                stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _wait_lines(path: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines()
        if len(lines) >= n:
            return lines
        if proc.poll() is not None:
            raise AssertionError(f"reader exited ({proc.returncode}) after {len(lines)} lines: {lines[-5:]}")
        time.sleep(0.01)
    raise AssertionError(f"reader wrote fewer than {n} lines in {timeout} s")


def _finish(proc: subprocess.Popen[bytes], out: Path, timeout: float = 60) -> list[str]:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"reader did not finish in {timeout} s") from None
    lines = out.read_text().splitlines()
    assert rc == 0, f"reader failed ({rc}): {lines[-10:]}"
    return lines


# -- the guard, as a reader sees it (fixture host root: expected bytes are the file we wrote) --

@pytest.fixture(params=["raw", "mfusepy"])
def fixture_daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Daemon]:
    d = start_daemon(tmp_path, "--host-root", str(make_fixture_root(tmp_path)), "--fuse-backend", request.param)
    try:
        yield d
    finally:
        d.stop()


def test_sendfile_is_refused_and_every_reader_gets_the_whole_file(fixture_daemon: Daemon, tmp_path: Path) -> None:
    f = fixture_daemon.mnt / "proc/meminfo"
    fd = os.open(f, os.O_RDONLY)
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as ei:
            os.sendfile(w, fd, None, 65536)
        assert ei.value.errno == errno.EINVAL  # sendfile(2): "in_fd does not support mmap-like operations"
        assert os.read(fd, 65536) == MEMINFO.encode()  # the same open file still reads fine with read(2)
    finally:
        os.close(fd)
        os.close(r)
        os.close(w)
    run = subprocess.run
    # busybox cat tries sendfile first, then falls back to read(2): the whole file, twice in a row
    for _ in range(2):
        assert run([BUSYBOX, "cat", str(f)], capture_output=True, check=True).stdout == MEMINFO.encode()
    assert run(["cat", str(f)], capture_output=True, check=True).stdout == MEMINFO.encode()
    assert run(["head", "-c", "30", str(f)], capture_output=True, check=True).stdout == MEMINFO.encode()[:30]
    shutil.copyfile(f, tmp_path / "copy")  # Python's sendfile fast path gives up on EINVAL and copies with read()
    assert (tmp_path / "copy").read_bytes() == MEMINFO.encode()
    assert f.read_bytes() == MEMINFO.encode()
    assert os.stat(f).st_size == len(MEMINFO)  # the host file's length (C lxcfs's st_size), unchanged by the reads


# -- two containers at once, one inode --

@pytest.mark.parametrize("via", ["mount-path", "bind-over-proc"])
def test_concurrent_busybox_readers_never_see_the_other_containers_meminfo(
        host_daemon: Daemon, cgroups: CgroupTree, tmp_path: Path, via: str) -> None:
    host_total = _host_meminfo_kb("MemTotal")
    assert host_total > 2 * GIB // 1024, "this test needs a host with more than 2 GiB of RAM"
    a = cgroups.child("a", memory_limit=GIB)
    b = cgroups.child("b", memory_limit=GIB // 2)
    src = str(host_daemon.mnt / "proc/meminfo")
    binds = {"/proc/meminfo": src} if via == "bind-over-proc" else {}
    path = "/proc/meminfo" if binds else src
    stop = tmp_path / "stop"
    reader = f"{BUSYBOX} cat {path} | {BUSYBOX} grep MemTotal"
    a_out, b_out = tmp_path / "a.out", tmp_path / "b.out"
    pa = _spawn(f"while [ ! -e {stop} ]; do {reader}; done", [a], binds, a_out)
    try:
        _wait_lines(a_out, 5, pa)  # A is looping before B starts: every B read overlaps A's reads
        pb = _spawn(f"i=0; while [ $i -lt 300 ]; do {reader}; i=$((i+1)); done; : > {stop}", [b], binds, b_out)
        b_lines = _finish(pb, b_out)
        a_lines = _finish(pa, a_out)
    finally:
        stop.touch()
        if pa.poll() is None:
            pa.kill()
            pa.wait()
    # lxcfs: MemTotal = min(memory.limit_in_bytes, host MemTotal), in kB (virtual-files.md)
    want_a, want_b = f"MemTotal: {GIB // 1024} kB", f"MemTotal: {GIB // 2048} kB"
    norm = [" ".join(x.split()) for x in b_lines]
    assert len(norm) == 300 and set(norm) == {want_b}, {x: norm.count(x) for x in set(norm)}
    norm_a = [" ".join(x.split()) for x in a_lines]
    assert len(norm_a) >= 30 and set(norm_a) == {want_a}, {x: norm_a.count(x) for x in set(norm_a)}


def test_cpuset_widening_shows_on_the_very_next_busybox_cat_despite_a_shorter_reader(
        host_daemon: Daemon, cgroups: CgroupTree, tmp_path: Path) -> None:
    n = _host_cpus()
    assert n >= 2, "this test needs at least 2 CPUs"
    all_cpus = f"0-{n - 1}"
    short = cgroups.child("short", cpus="0")  # renders a 1-CPU cpuinfo, shorter than the host file
    grow = cgroups.child("grow", cpus="0")
    binds = {"/proc/cpuinfo": str(host_daemon.mnt / "proc/cpuinfo")}
    count = f"{BUSYBOX} cat /proc/cpuinfo | {BUSYBOX} grep -c ^processor"
    stop, go = tmp_path / "stop", tmp_path / "go"
    s_out, g_out = tmp_path / "short.out", tmp_path / "grow.out"
    ps = _spawn(f"while [ ! -e {stop} ]; do {count}; done", [short], binds, s_out)
    try:
        _wait_lines(s_out, 5, ps)
        pg = _spawn(f"{count}; while [ ! -e {go} ]; do sleep 0.02; done; "
                    f"i=0; while [ $i -lt 100 ]; do {count}; i=$((i+1)); done; : > {stop}", [grow], binds, g_out)
        assert _wait_lines(g_out, 1, pg) == ["1"]
        grow.set_cpus(all_cpus)
        go.touch()
        g_lines = _finish(pg, g_out)
        s_lines = _finish(ps, s_out)
    finally:
        stop.touch()
        go.touch()
        if ps.poll() is None:
            ps.kill()
            ps.wait()
    # the first read after the change, and every one after it, shows all CPUs, while the 1-CPU reader kept reading
    assert g_lines[0] == "1" and g_lines[1:] == [str(n)] * 100, g_lines
    assert len(s_lines) >= 20 and set(s_lines) == {"1"}, s_lines[-10:]


def test_free_and_stat_inside_a_container(host_daemon: Daemon, cgroups: CgroupTree, tmp_path: Path) -> None:
    cg = cgroups.child("free", memory_limit=GIB // 2)
    binds = {"/proc/meminfo": str(host_daemon.mnt / "proc/meminfo")}
    out = tmp_path / "free.out"
    p = _spawn(f"free -k; stat -c %s /proc/meminfo; {BUSYBOX} head -c 9 /proc/meminfo; echo; "
               "python3 -c 'print(open(\"/proc/meminfo\").read().split()[1])'", [cg], binds, out)
    lines = _finish(p, out)
    mem = next(x.split() for x in lines if x.startswith("Mem:"))
    assert int(mem[1]) == GIB // 2048  # free's total = the cgroup limit in kB
    # st_size is the host file's length (as C lxcfs); a digit of the host's counters may have changed since
    assert abs(int(lines[-3]) - len(Path("/proc/meminfo").read_bytes())) < 16
    assert lines[-2] == "MemTotal:" and int(lines[-1]) == GIB // 2048
