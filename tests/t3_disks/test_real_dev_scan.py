"""devnames.py's scan of a real container /dev (openat2 RESOLVE_CACHED, statx mount ids) on real mount
namespaces: which entries count, that nothing is followed out of the container, that a big /dev costs one
bounded scan per change, and that more than 256 containers are cached side by side. Expectations come from what
each test created."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pylxcfs import devnames
from pylxcfs.devnames import DeviceNameCache
from pylxcfs.hostfs import HostRoot

from .conftest import Loop

pytestmark = pytest.mark.root
CTLITE = Path(__file__).with_name("ctlite.py")


def _ct(rootfs: Path, setup: str) -> tuple[subprocess.Popen[bytes], int]:
    """A container-like init (private mount + pid ns, rootfs bind-mounted onto itself, tmpfs /dev) after `setup`
    (shell run with $D = the container's /dev as seen before the chroot)."""
    (rootfs / "dev").mkdir(parents=True, exist_ok=True)
    (rootfs / "bin").mkdir(exist_ok=True)
    subprocess.run(["cp", "/bin/busybox", str(rootfs / "bin" / "busybox")], check=True)
    script = "\n".join([
        "set -e", f'mount --bind "{rootfs}" "{rootfs}"', f'mount -t tmpfs -o mode=755 tmpfs "{rootfs}/dev"',
        f'D="{rootfs}/dev"', setup, f"touch {rootfs}/dev/.ready",
        f'exec chroot "{rootfs}" /bin/busybox sleep 600'])
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
                             "--", "/bin/sh", "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while True:
        kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split() if proc.poll() is None else []
        if kids and Path(f"/proc/{kids[0]}/root/dev/.ready").exists() and \
                os.readlink(f"/proc/{kids[0]}/exe").endswith("busybox"):
            return proc, int(kids[0])
        if proc.poll() is not None:
            pytest.fail(f"container exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "container did not start"
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


def test_entries_that_count(tmp_path: Path, loops: list[Loop]) -> None:
    a, b = loops[0].dev, loops[1].dev
    setup = "\n".join([
        f'mknod "$D/xvdb" b {a[0]} {a[1]}', f'mknod "$D/aaa-same" b {a[0]} {a[1]}',  # two names: first wins
        'mknod "$D/null" c 1 3',  # a character device: not a disk
        f'mknod "$D/$(printf "evil\\n 7 0 x")" b {b[0]} {b[1]}',  # a name that would inject a line
        f'mknod "$D/sp ace" b {b[0]} {b[1]}',
        'echo "block 7:201" > "$D/regular"',  # the fixture-tree convention: never honoured on real procfs
        'ln -s /dev/vda "$D/vda"',  # an absolute symlink would name the DAEMON's /dev/vda: skipped
        f'mkdir "$D/mapper" && mknod "$D/mapper/vg-x" b {b[0]} {b[1]}',  # subdirectories are not scanned
    ])
    proc, init = _ct(tmp_path / "root", setup)
    try:
        got = devnames.scan_container_devices(HostRoot(), init)
        assert got.nodes == {a: "aaa-same"}
        st = os.stat(tmp_path / "root")
        assert got.root_dev == (os.major(st.st_dev), os.minor(st.st_dev))
    finally:
        _stop(proc)


def test_symlinked_dev_is_not_followed(tmp_path: Path) -> None:
    # /dev as a symlink to the host's /dev (full of disks) inside a rootfs without a tmpfs on it: not scanned.
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    subprocess.run(["cp", "/bin/busybox", str(root / "bin")], check=True)
    os.symlink("/dev", root / "dev")
    script = f'set -e\nmount --bind "{root}" "{root}"\nexec chroot "{root}" /bin/busybox sleep 600'
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
                             "--", "/bin/sh", "-c", script])
    try:
        deadline = time.monotonic() + 20
        while True:
            kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            if kids and os.readlink(f"/proc/{kids[0]}/exe").endswith("busybox"):
                break
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
        assert devnames.scan_container_devices(HostRoot(), int(kids[0])).nodes == {}
    finally:
        _stop(proc)


def test_big_dev_costs_one_bounded_scan_per_change(tmp_path: Path, loops: list[Loop]) -> None:
    a = loops[0].dev
    n = 20_000
    setup = (f'{sys.executable} -c "import os; [open(os.path.join(os.environ[\'D\'], f\'e{{i}}\'), \'w\').close() '
             f'for i in range({n})]"\nexport D\nmknod "$D/xvdq" b {a[0]} {a[1]}')
    proc, init = _ct(tmp_path / "root", "export D\n" + setup)
    try:
        now = [0.0]
        cache = DeviceNameCache(clock=lambda: now[0])
        t0 = time.perf_counter()
        got = cache.get(HostRoot(), init, 1)
        first_s = time.perf_counter() - t0
        # tmpfs lists the newest entry first: the node made last is within the bounded scan.
        assert got.nodes == {a: "xvdq"}
        assert cache.stats.scans == 1 and cache.stats.entries == devnames.MAX_DEV_ENTRIES
        assert cache.stats.truncated == 1
        for _ in range(5):  # five TTL expiries without a change in /dev: no rescan
            now[0] += 2 * devnames.CACHE_TTL_S
            t0 = time.perf_counter()
            assert cache.get(HostRoot(), init, 1).nodes == {a: "xvdq"}
        recheck_s = time.perf_counter() - t0
        assert cache.stats.scans == 1
        # A change in /dev (a node removed) is seen at the next check.
        subprocess.run(["nsenter", "-t", str(init), "-m", "--", "rm", f"{tmp_path}/root/dev/xvdq"], check=True)
        now[0] += 2 * devnames.CACHE_TTL_S
        assert cache.get(HostRoot(), init, 1).nodes == {}
        assert cache.stats.scans == 2
        print(f"\n/dev with {n} entries: first scan {first_s * 1e3:.1f} ms (capped at {devnames.MAX_DEV_ENTRIES} "
              f"entries), unchanged re-check {recheck_s * 1e6:.0f} us", file=sys.stderr)
    finally:
        _stop(proc)


@pytest.mark.slow
def test_more_than_256_containers_do_not_evict_each_other(tmp_path: Path, loops: list[Loop]) -> None:
    rootfs = tmp_path / "root"
    (rootfs / "dev").mkdir(parents=True)
    a = loops[0].dev
    n = 300
    proc = subprocess.Popen([sys.executable, str(CTLITE), str(rootfs), str(n), f"{a[0]}:{a[1]}"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        pids: list[int] = []
        for line in proc.stdout:
            if line.strip() == "ready":
                break
            assert line.strip().isdigit(), line
            pids.append(int(line))
        assert len(pids) == n
        cache = DeviceNameCache(clock=lambda: 10.0)
        for i, pid in enumerate(pids):
            assert cache.get(HostRoot(), pid, 1).nodes == {a: f"ct{i}"}
        assert cache.stats.scans == n
        for i, pid in enumerate(pids):  # the second round: every container still cached
            assert cache.get(HostRoot(), pid, 1).nodes == {a: f"ct{i}"}
        assert cache.stats.scans == n and len(cache) == n
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)
