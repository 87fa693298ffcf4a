"""The root device of a container whose root filesystem is overlayfs (what docker/podman/containerd use): its
mount at "/" has an anonymous device (0:N), so devnames.py looks that overlay up in the DAEMON's own mountinfo
(the engine mounted it in the host's namespace) and takes the device of the host mount holding its upperdir, as
text. An overlay mounted only inside the container's namespace (a tenant's own) is never resolved.
Real overlay mounts, real chroot, real pid namespaces; the host-side overlay is on a test-owned tmp path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from pylxcfs.context import ViewEnv, ViewOptions
from pylxcfs.devnames import scan_container_devices
from pylxcfs.hostfs import HostRoot
from pylxcfs.procs.resolve import Resolver
from pylxcfs.views import partitions

pytestmark = pytest.mark.root


def _layers(tmp_path: Path) -> tuple[str, Path, Path, tuple[int, int]]:
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower / "bin", lower / "dev", upper, work, merged):
        d.mkdir(parents=True)
    shutil.copy("/bin/busybox", lower / "bin" / "busybox")
    st = os.stat(upper)
    upper_dev = (os.major(st.st_dev), os.minor(st.st_dev))
    if upper_dev[0] == 0:
        pytest.fail(f"{tmp_path} must be on a block device for this test, got {upper_dev}")
    return f"lowerdir={lower},upperdir={upper},workdir={work}", upper, merged, upper_dev


def _start(upper: Path, script: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
                             "--", "/bin/sh", "-c", "\n".join(["set -e", *script])], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not (upper / "ready").exists():  # written through the overlay, lands in upperdir
        if proc.poll() is not None:
            pytest.fail(f"container exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        assert time.monotonic() < deadline, "container did not start"
        time.sleep(0.02)
    return proc, int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


RUN = "exec chroot {m} /bin/busybox sh -c 'echo ok > /ready && exec /bin/busybox sleep 600'"


def test_engine_overlay_root_is_named_by_its_upper_device(tmp_path: Path) -> None:
    opts, upper, merged, upper_dev = _layers(tmp_path)
    # As an engine does: the overlay is mounted in the host's namespace; the container gets /dev as a tmpfs.
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)], check=True)
    proc = None
    try:
        proc, init = _start(upper, [f"mount -t tmpfs -o mode=755 tmpfs {merged}/dev", RUN.format(m=merged)])
        assert os.major(os.stat(f"/proc/{init}/root").st_dev) == 0, "overlay roots have an anonymous st_dev"
        devs = scan_container_devices(HostRoot(), init)
        assert devs.root_dev == upper_dev
        assert devs.nodes == {}  # an empty tmpfs /dev
        ctx = Resolver(HostRoot()).resolve(init)
        out = partitions.produce(ViewEnv(root=HostRoot(), opts=ViewOptions()), ctx)
        rows = [ln.split() for ln in out.splitlines()[2:]]
        assert [(int(r[0]), int(r[1]), r[3]) for r in rows] == [(*upper_dev, "sda")]
    finally:
        if proc is not None:
            _stop(proc)
        subprocess.run(["umount", "-l", str(merged)], check=False)


def test_tenant_overlay_root_is_not_resolved(tmp_path: Path) -> None:
    opts, upper, merged, _ = _layers(tmp_path)
    # The same overlay mounted only inside the container's own mount namespace: not in the daemon's table.
    proc, init = _start(upper, [f"mount -t overlay overlay -o {opts} {merged}",
                                f"mount -t tmpfs -o mode=755 tmpfs {merged}/dev", RUN.format(m=merged)])
    try:
        devs = scan_container_devices(HostRoot(), init)
        assert devs.root_dev is None and devs.nodes == {}
    finally:
        _stop(proc)
