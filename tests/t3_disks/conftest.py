"""Real-kernel fixtures for the disks views (root only): loop devices, a test-owned v1 blkio cgroup with
throttle rules, and a container-like process (PID 1 of a new pid + mount namespace, chrooted into a tmp
rootfs bind-mounted onto itself as engines do, whose /dev is a tmpfs holding ONE node for one loop device)
that did O_DIRECT I/O from inside the cgroup. Everything is undone in finalizers: the init is killed by pid,
the cgroup emptied and removed, loop devices detached. The tmpfs /dev only ever exists in the private mount
namespace, which dies with it.

Why throttle rules: on this blk-mq kernel (6.18) the only v1 blkio statistics are blk-throttle's and bfq's,
and blk-throttle counts a device only while the cgroup has a rule for it (spec §6.9, measured). A rule of
10^12 bytes/s never throttles anything.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.cgv1 import CgroupTree, V1Cgroup

IMG_BYTES = 8 << 20
HUGE_BPS = 10**12
BUSYBOX = "/bin/busybox"

# What the container does (counts the tests compare against, as lower bounds).
XVDB_READS, XVDB_WRITES = 10, 3  # 4 KiB O_DIRECT each, on the loop device named xvdb in the container
ROOT_READS, ROOT_WRITES = 4, 2  # 4 KiB O_DIRECT each, on a file of the container's root filesystem
HIDDEN_READS = 5  # on a second loop device that has no node in the container


@dataclass(frozen=True)
class Loop:
    path: str
    dev: tuple[int, int]


@dataclass(frozen=True)
class Container:
    init_pid: int  # as seen from the host
    rootfs: Path
    cgroup: V1Cgroup
    visible: Loop  # node /dev/xvdb in the container
    hidden: Loop  # no node in the container
    root_disk: tuple[int, int]  # the disk holding rootfs (shown as sda)


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the real disks tests need root (this machine kind always runs tests as root)")


def _devt(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return (os.major(st.st_rdev), os.minor(st.st_rdev))


def _whole_disk(dev: tuple[int, int]) -> tuple[int, int]:
    base = f"/sys/dev/block/{dev[0]}:{dev[1]}"
    if os.path.exists(f"{base}/partition"):
        major, minor = Path(f"{base}/../dev").read_text().strip().split(":")
        return (int(major), int(minor))
    return dev


@pytest.fixture(scope="package")
def loops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Loop]]:
    _need_root()
    d = tmp_path_factory.mktemp("disks-img")
    made: list[Loop] = []
    try:
        for i in range(2):
            img = d / f"img{i}"
            with open(img, "wb") as f:
                f.truncate(IMG_BYTES)
            out = subprocess.run(["losetup", "--find", "--show", str(img)], capture_output=True, text=True, check=True)
            path = out.stdout.strip()
            made.append(Loop(path, _devt(path)))
        yield made
    finally:
        for lp in made:
            subprocess.run(["losetup", "-d", lp.path], check=False)


@pytest.fixture(scope="package")
def container(loops: list[Loop], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    visible, hidden = loops
    rootfs = tmp_path_factory.mktemp("disks-ct")
    st = os.stat(rootfs)
    root_dev = (os.major(st.st_dev), os.minor(st.st_dev))
    if root_dev[0] == 0:
        pytest.fail(f"{rootfs} is not on a block device ({root_dev}); the root-as-sda check needs one")
    root_disk = _whole_disk(root_dev)
    (rootfs / "bin").mkdir()
    (rootfs / "dev").mkdir()
    (rootfs / "data").mkdir()
    shutil.copy(BUSYBOX, rootfs / "bin" / "busybox")
    with open(rootfs / "data" / "f", "wb") as f:  # allocated before the container overwrites it directly
        f.write(b"\1" * (16 << 10))
        f.flush()
        os.fsync(f.fileno())

    tree = CgroupTree(area="disks", controllers=("blkio",))
    tree.create()
    proc: subprocess.Popen[bytes] | None = None
    try:
        rules = "\n".join(f"{m}:{n} {HUGE_BPS}" for m, n in (visible.dev, hidden.dev, root_disk))
        cg = tree.child("ct")
        for fname in ("blkio.throttle.read_bps_device", "blkio.throttle.write_bps_device"):
            for rule in rules.splitlines():  # one rule per write(2): the kernel parses one per write
                cg.set("blkio", fname, rule)
        bb = "/bin/busybox"
        inner = " && ".join([
            f"{bb} dd if=/dev/xvdb of=/dev/null bs=4096 count={XVDB_READS} iflag=direct 2>/dev/null",
            f"{bb} dd if=/dev/zero of=/dev/xvdb bs=4096 count={XVDB_WRITES} oflag=direct 2>/dev/null",
            f"{bb} dd if=/data/f of=/dev/null bs=4096 count={ROOT_READS} iflag=direct 2>/dev/null",
            f"{bb} dd if=/dev/zero of=/data/f bs=4096 count={ROOT_WRITES} oflag=direct conv=notrunc 2>/dev/null",
            f"echo ok > /ready && exec {bb} sleep 600",
        ])
        script = "\n".join([
            "set -e",
            # The rootfs becomes a mount of its own, as runc, crun and LXC make it before pivot_root: the
            # init's mountinfo then lists it at "/" (a plain chroot into a directory would not be listed).
            f'mount --bind "{rootfs}" "{rootfs}"',
            f'mount -t tmpfs -o mode=755,size=64k tmpfs "{rootfs}/dev"',
            f'mknod "{rootfs}/dev/xvdb" b {visible.dev[0]} {visible.dev[1]}',
            f'mknod -m 666 "{rootfs}/dev/null" c 1 3',
            f'mknod -m 666 "{rootfs}/dev/zero" c 1 5',
            f"dd if={hidden.path} of=/dev/null bs=4096 count={HIDDEN_READS} iflag=direct status=none",
            f"exec chroot \"{rootfs}\" {bb} sh -c '{inner}'",
        ])
        procs_file = str(cg.dir("blkio") / "cgroup.procs")

        def enter() -> None:
            fd = os.open(procs_file, os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

        proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
             "--", "/bin/sh", "-c", script],
            preexec_fn=enter, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20
        while not (rootfs / "ready").exists():
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"container exited early ({proc.returncode}): {err}")
            if time.monotonic() > deadline:
                pytest.fail("container did not finish its I/O within 20 s")
            time.sleep(0.02)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1, children
        yield Container(int(children[0]), rootfs, cg, visible, hidden, root_disk)
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)  # --kill-child takes the init down with it
            proc.wait(timeout=10)
        tree.destroy()
