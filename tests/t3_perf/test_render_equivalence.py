"""Every speed change of the render path (issue 5) keeps the output identical and fresh, on this machine's real
v1 cgroups: the optimized Renderer.render() of a pid-namespace init in a test-owned cgroup equals a
straightforward reference render (plain open/read of every file, full parses, no cache of any kind) built from
the same pure render functions, and a change in the cgroup (I/O done, limit changed, memory allocated) shows on
the very next open, with no sleep: nothing the caches keep can hide it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pylxcfs.cgroups import memory
from pylxcfs.cgroups.blkio import io_counters
from pylxcfs.context import ViewOptions
from pylxcfs.devnames import scan_container_devices
from pylxcfs.hostfs import HostRoot, read_bytes
from pylxcfs.parse.diskstats import parse_diskstats
from pylxcfs.parse.meminfo import parse_meminfo
from pylxcfs.service import Renderer
from pylxcfs.views.diskstats import diskstats_names, render_diskstats
from pylxcfs.views.meminfo import render_meminfo
from support.cgv1 import CgroupTree, V1Cgroup

pytestmark = pytest.mark.root

MIB = 1 << 20


@dataclass
class Ct:
    cg: V1Cgroup
    init: int
    proc: subprocess.Popen[bytes]
    scratch: Path
    disk: str | None


def _disk_of(path: Path) -> str | None:
    dev = os.stat(path).st_dev
    d = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    if not d.exists():
        return None
    if (d / "partition").exists():
        d = d.resolve().parent
    return (d / "dev").read_text().strip()


def _enter(cg: V1Cgroup) -> None:
    for f in cg.procs_files():
        with open(f, "w") as fh:
            fh.write(str(os.getpid()))


def _in_cgroup(cg: V1Cgroup, argv: list[str]) -> None:
    subprocess.run(argv, preexec_fn=lambda: _enter(cg), check=True, capture_output=True)


def _init_of(launcher: int) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for pid in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
            nspid = [ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("NSpid:")]
            if nspid and nspid[0].split()[-1] == "1":
                return int(pid)
        time.sleep(0.02)
    raise AssertionError("no pid-namespace init appeared")


@pytest.fixture
def ct(tmp_path: Path) -> Iterator[Ct]:
    if os.geteuid() != 0:
        pytest.fail("needs root (this machine kind runs the tests as root)")
    tree = CgroupTree("perf")
    tree.create()
    proc: subprocess.Popen[bytes] | None = None
    try:
        cg = tree.child("ct", memory_limit=256 * MIB, cpus="0")
        disk = _disk_of(tmp_path)
        if disk is not None:
            # blk-mq v1 accounts per-cgroup I/O only for devices with a throttle rule: one that never throttles.
            cg.set("blkio", "blkio.throttle.read_bps_device", f"{disk} {1 << 40}")
        proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "600"],
                                preexec_fn=lambda: _enter(cg))
        yield Ct(cg, _init_of(proc.pid), proc, tmp_path, disk)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        tree.destroy()


def _direct_io(ct: Ct, kib: int) -> None:
    f = ct.scratch / "io"
    _in_cgroup(ct.cg, ["dd", "if=/dev/zero", f"of={f}", "bs=4k", f"count={kib // 4}", "oflag=direct", "status=none"])
    _in_cgroup(ct.cg, ["dd", f"if={f}", "of=/dev/null", "bs=4k", "iflag=direct", "status=none"])


def reference_diskstats(r: Renderer, pid: int) -> str:
    """The straightforward render: every file opened and read now, the whole host file parsed."""
    ctx = r.context(pid)
    assert ctx.blkio is not None
    names = diskstats_names(scan_container_devices(r.root, ctx.init_pid))
    counters = io_counters(ctx.blkio, read_bytes)
    host = parse_diskstats(read_bytes("/proc/diskstats").decode("ascii", "replace"))
    return render_diskstats(host, counters, names)


def reference_meminfo(r: Renderer, pid: int) -> str:
    ctx = r.context(pid)
    assert ctx.memory is not None
    host = parse_meminfo(read_bytes("/proc/meminfo").decode())
    want_swap = (host.value_kib("SwapTotal") or 0) > 0
    return render_meminfo(host, memory.snapshot(ctx.memory, want_swap), r.opts)


def _kv(text: str) -> dict[str, str]:
    return {ln.split(":")[0]: ln.split(":", 1)[1].strip() for ln in text.splitlines()}


# meminfo keys computed from the cgroup (views/meminfo.py); the other lines are the host's own, which change on
# their own between two reads (Committed_AS, KernelStack...) and are compared by key order only.
CGROUP_KEYS = ("MemTotal", "MemFree", "MemAvailable", "Cached", "Active", "Inactive", "Active(anon)",
               "Inactive(anon)", "Active(file)", "Inactive(file)", "Unevictable", "SwapTotal", "SwapFree",
               "AnonPages", "Mapped", "Shmem", "Slab", "SReclaimable", "SUnreclaim", "AnonHugePages")


def test_diskstats_optimized_equals_reference_and_counters_are_fresh(ct: Ct) -> None:
    if ct.disk is None:
        pytest.fail("the temp dir is on no block device: cannot make blkio statistics here")
    _direct_io(ct, 256)
    r = Renderer(HostRoot(), ViewOptions())
    first = r.render("proc/diskstats", ct.init).decode()
    assert first.strip(), "the container should have rows (throttle rule + O_DIRECT I/O)"
    for _ in range(3):  # warm caches (descriptors, host layout, missing files) give the same bytes
        assert r.render("proc/diskstats", ct.init).decode() == reference_diskstats(r, ct.init)
    before = {ln.split()[2]: [int(x) for x in ln.split()[3:]] for ln in first.splitlines()}
    _direct_io(ct, 512)  # 128 reads + 128 writes more, done now
    after_text = r.render("proc/diskstats", ct.init).decode()  # the very next open, no sleep
    assert after_text == reference_diskstats(r, ct.init)
    after = {ln.split()[2]: [int(x) for x in ln.split()[3:]] for ln in after_text.splitlines()}
    grew = [name for name in before
            if after[name][0] >= before[name][0] + 128 and after[name][4] >= before[name][4] + 128]
    assert grew, (before, after)
    assert r.fallbacks == {}


def test_meminfo_optimized_equals_reference_and_is_fresh(ct: Ct) -> None:
    r = Renderer(HostRoot(), ViewOptions())
    for _ in range(3):
        fast = r.render("proc/meminfo", ct.init).decode()
        for _attempt in range(5):  # the cgroup is idle; a retry only absorbs a concurrent kernel stats flush
            ref = reference_meminfo(r, ct.init)
            if all(_kv(fast)[k] == _kv(ref)[k] for k in CGROUP_KEYS if k in _kv(ref)):
                break
            fast = r.render("proc/meminfo", ct.init).decode()
        assert list(_kv(fast)) == list(_kv(ref))
        assert {k: _kv(fast)[k] for k in CGROUP_KEYS if k in _kv(ref)} == {
            k: _kv(ref)[k] for k in CGROUP_KEYS if k in _kv(ref)}
    assert _kv(fast)["MemTotal"] == f"{256 * 1024} kB"
    ct.cg.set_memory_limit(128 * MIB)
    assert _kv(r.render("proc/meminfo", ct.init).decode())["MemTotal"] == f"{128 * 1024} kB"  # next open
    free_before = int(_kv(r.render("proc/meminfo", ct.init).decode())["MemFree"].split()[0])
    hog_src = "import sys; b = bytearray(48 << 20); b[::4096] = b'x' * len(b[::4096]); print('ok', flush=True); " \
        "sys.stdin.read()"
    hog = subprocess.Popen([sys.executable, "-c", hog_src], preexec_fn=lambda: _enter(ct.cg),
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == b"ok"
        free_after = int(_kv(r.render("proc/meminfo", ct.init).decode())["MemFree"].split()[0])
        assert free_before - free_after >= 40 * 1024, (free_before, free_after)
    finally:
        hog.kill()
        hog.wait()
    assert r.fallbacks == {}


def test_uptime_and_swaps_are_read_fresh(ct: Ct) -> None:
    r = Renderer(HostRoot(), ViewOptions())
    up1 = float(r.render("proc/uptime", ct.init).split()[0])
    time.sleep(0.2)
    up2 = float(r.render("proc/uptime", ct.init).split()[0])
    assert 0.15 <= up2 - up1 <= 2.0  # the descriptor is re-read (pread at 0), never a kept value
    swaps = r.render("proc/swaps", ct.init).decode()
    assert swaps.splitlines()[0] == read_bytes("/proc/swaps").decode().splitlines()[0]
    assert r.fallbacks == {}


def test_meminfo_follows_a_cgroup_recreated_at_the_same_path(tmp_path: Path) -> None:
    # A restarted container usually gets its cgroup back at the same path (docker restart: /docker/<id>): the
    # cached descriptor of the old cgroup's files must not be read for the new one (fdcache.py: ENODEV -> reopen).
    tree = CgroupTree("perfrecreate")
    tree.create()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        r = Renderer(HostRoot(), ViewOptions())
        for limit_mib in (200, 300):
            cg = tree.child("ct", memory_limit=limit_mib * MIB, cpus="0")
            p = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "sleep", "600"],
                                 preexec_fn=lambda cg=cg: _enter(cg))
            procs.append(p)
            init = _init_of(p.pid)
            assert _kv(r.render("proc/meminfo", init).decode())["MemTotal"] == f"{limit_mib * 1024} kB"
            assert _kv(r.render("proc/meminfo", init).decode())["MemTotal"] == f"{limit_mib * 1024} kB"
            p.kill()
            p.wait()
            for c in cg.controllers:  # rmdir the cgroup (its members are gone), then make it again
                for _ in range(100):
                    try:
                        cg.dir(c).rmdir()
                        break
                    except OSError:
                        time.sleep(0.02)
        assert r.fallbacks == {}
    finally:
        for p in procs:
            p.kill()
            p.wait()
        tree.destroy()
