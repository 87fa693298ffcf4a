"""diskstats and partitions for a real container-like process on this machine (v1 blkio, blk-throttle).

The container (PID 1 of its own pid + mount ns, chrooted, /dev a tmpfs with one node `xvdb` for a loop
device) did O_DIRECT I/O in a test-owned blkio cgroup. Expectations come from what it did, from the
cgroup's own statistics files and from the host's /proc/partitions and sysfs, never from our output.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylxcfs.context import ViewEnv, ViewOptions
from pylxcfs.hostfs import HostRoot
from pylxcfs.procs.resolve import Resolver
from pylxcfs.service import Renderer
from pylxcfs.views import diskstats, partitions

from .conftest import (
    HIDDEN_READS,
    IMG_BYTES,
    ROOT_READS,
    ROOT_WRITES,
    XVDB_READS,
    XVDB_WRITES,
    Container,
)

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def _rows(text: str) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for line in text.splitlines():
        f = line.split()
        out[f[2]] = [int(x) for x in f[:2] + f[3:]]
    return out


def _throttle(ct: Container, name: str) -> dict[tuple[int, int], dict[str, int]]:
    got: dict[tuple[int, int], dict[str, int]] = {}
    for line in (ct.cgroup.dir("blkio") / name).read_text().splitlines():
        f = line.split()
        if len(f) == 3:
            major, minor = f[0].split(":")
            got.setdefault((int(major), int(minor)), {})[f[1]] = int(f[2])
    return got


def _produce(ct: Container) -> tuple[str, str]:
    root = HostRoot()
    ctx = Resolver(root).resolve(ct.init_pid)
    assert ctx.init_pid == ct.init_pid and ctx.blkio is not None
    assert ctx.blkio.path.endswith(ct.cgroup.rel)
    env = ViewEnv(root=root, opts=ViewOptions())
    return diskstats.produce(env, ctx), partitions.produce(env, ctx)


def test_diskstats_shows_container_devices_only(container: Container) -> None:
    ds, _ = _produce(container)
    rows = _rows(ds)
    assert set(rows) == {"xvdb", "sda"}, ds
    x = rows["xvdb"]
    assert x[:2] == list(container.visible.dev)
    # fields: reads merged sectors ms writes merged sectors ms inflight io_ms weighted_ms ...
    assert x[2] >= XVDB_READS and x[4] >= XVDB_READS * 8
    assert x[6] >= XVDB_WRITES and x[8] >= XVDB_WRITES * 8
    assert len(x) - 2 == len(Path("/proc/diskstats").read_text().split("\n")[0].split()) - 3  # host's width
    s = rows["sda"]
    assert s[:2] == list(container.root_disk)
    assert s[2] >= ROOT_READS and s[6] >= ROOT_WRITES
    # Equal to the cgroup's own counters for the (idle) loop device.
    serviced = _throttle(container, "blkio.throttle.io_serviced_recursive")[container.visible.dev]
    nbytes = _throttle(container, "blkio.throttle.io_service_bytes_recursive")[container.visible.dev]
    want = (serviced["Read"], nbytes["Read"] // 512, serviced["Write"], nbytes["Write"] // 512)
    assert (x[2], x[4], x[6], x[8]) == want
    # The hidden loop device WAS counted in the cgroup, yet is not shown under any name.
    assert _throttle(container, "blkio.throttle.io_serviced_recursive")[container.hidden.dev]["Read"] >= HIDDEN_READS
    assert all(tuple(r[:2]) != container.hidden.dev for r in rows.values())
    assert os.path.basename(container.hidden.path) not in ds and os.path.basename(container.visible.path) not in ds


def test_partitions_named_as_in_container(container: Container) -> None:
    _, parts = _produce(container)
    lines = parts.splitlines()
    assert lines[:2] == ["major minor  #blocks  name", ""]
    rows = {f[3]: (int(f[0]), int(f[1]), int(f[2])) for f in (ln.split() for ln in lines[2:])}
    assert set(rows) == {"xvdb", "sda"}, parts
    assert rows["xvdb"] == (*container.visible.dev, IMG_BYTES // 1024)
    st = os.stat(container.rootfs)
    rdev = (os.major(st.st_dev), os.minor(st.st_dev))
    sectors = int(Path(f"/sys/dev/block/{rdev[0]}:{rdev[1]}/size").read_text())
    assert rows["sda"] == (*rdev, sectors // 2)


def test_renderer_serves_the_view_to_the_container(container: Container) -> None:
    r = Renderer(HostRoot(), ViewOptions())
    try:
        ds = r.render("proc/diskstats", container.init_pid).decode()
        parts = r.render("proc/partitions", container.init_pid).decode()
    finally:
        r.close()
    assert set(_rows(ds)) == {"xvdb", "sda"}
    assert "xvdb" in parts and Path("/proc/diskstats").read_text() != ds


def test_host_caller_gets_host_file(container: Container) -> None:
    r = Renderer(HostRoot(), ViewOptions())
    try:
        ds = r.render("proc/diskstats", os.getpid())
    finally:
        r.close()
    assert b" xvdb " not in ds and os.path.basename(container.visible.path).encode() in ds


@pytest.mark.fuse
def test_fuse_read_from_inside_the_pid_namespace(container: Container, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "daemon.log"
    with open(log, "wb") as logf:
        daemon = subprocess.Popen([str(REPO / ".venv" / "bin" / "pylxcfs"), "-f", "-d", "--pidfile",
                                   str(tmp_path / "pid"), str(mnt)], stderr=logf)
    try:
        deadline = time.monotonic() + 15
        while not os.path.ismount(mnt):
            if daemon.poll() is not None:
                pytest.fail(f"daemon died: {log.read_text()[-3000:]}")
            assert time.monotonic() < deadline, "mount did not appear"
            time.sleep(0.05)
        # nsenter -p: the reader is a process of the container's pid namespace (the FUSE request pid).
        out = subprocess.run(["nsenter", "-t", str(container.init_pid), "-p", "--", "cat", f"{mnt}/proc/diskstats"],
                             capture_output=True, text=True, check=True, timeout=10).stdout
        if set(_rows(out)) != {"xvdb", "sda"}:
            pytest.fail(f"container reader got:\n{out}\ndaemon log:\n{log.read_text()[-3000:]}")
        host = subprocess.run(["cat", f"{mnt}/proc/diskstats"], capture_output=True, text=True, check=True).stdout
        assert " xvdb " not in host
    finally:
        daemon.terminate()
        try:
            daemon.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        if os.path.ismount(mnt):
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_per_open_cost_is_recorded(container: Container) -> None:
    # Not a timed assertion (speed goals live in bench/): records the costs so the report can quote them.
    from pylxcfs.devnames import scan_container_devices

    root = HostRoot()
    ctx = Resolver(root).resolve(container.init_pid)
    env = ViewEnv(root=root, opts=ViewOptions())

    def per_call_us(fn: object, n: int = 200) -> float:
        assert callable(fn)
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - t0) / n * 1e6

    d = per_call_us(lambda: diskstats.produce(env, ctx))
    p = per_call_us(lambda: partitions.produce(env, ctx))
    s = per_call_us(lambda: scan_container_devices(root, container.init_pid))
    print(f"\ndisks per-open: diskstats {d:.0f} us, partitions {p:.0f} us (warm device cache); "
          f"uncached /dev scan {s:.0f} us", file=sys.stderr)
    assert d > 0 and p > 0 and s > 0
