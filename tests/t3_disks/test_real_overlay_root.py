"""The root device of a container whose root filesystem is overlayfs (what docker/podman/containerd use):
st_dev of its root is an anonymous device (major 0), so devnames.py falls back to the "/" entry of the
init's mountinfo and the device of the overlay's upperdir. Real overlay mount in a private mount namespace
(never visible on the host), real chroot, real pid namespace."""

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
from pylxcfs.views import partitions

pytestmark = pytest.mark.root


def test_overlay_root_is_named_by_its_upperdir_device(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("needs root")
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for d in (lower / "bin", upper, work, merged):
        d.mkdir(parents=True)
    shutil.copy("/bin/busybox", lower / "bin" / "busybox")
    st = os.stat(upper)
    upper_dev = (os.major(st.st_dev), os.minor(st.st_dev))
    if upper_dev[0] == 0:
        pytest.fail(f"{tmp_path} must be on a block device for this test, got {upper_dev}")
    script = "\n".join([
        "set -e",
        f"mount -t overlay overlay -o lowerdir={lower},upperdir={upper},workdir={work} {merged}",
        f"exec chroot {merged} /bin/busybox sh -c 'echo ok > /ready && exec /bin/busybox sleep 600'",
    ])
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--kill-child", "--mount", "--propagation", "private",
                             "--", "/bin/sh", "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while not (upper / "ready").exists():  # written through the overlay, lands in upperdir
            if proc.poll() is not None:
                pytest.fail(f"container exited: {proc.stderr.read().decode() if proc.stderr else ''}")
            assert time.monotonic() < deadline
            time.sleep(0.02)
        init = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
        root_st = os.stat(f"/proc/{init}/root")
        assert os.major(root_st.st_dev) == 0, "overlay roots have an anonymous st_dev"
        devs = scan_container_devices(HostRoot(), init)
        assert devs.root_dev == upper_dev
        assert devs.nodes == {}  # the container has no /dev at all
        # partitions then shows just the root device, as sda, with its host size.
        from pylxcfs.procs.resolve import Resolver

        ctx = Resolver(HostRoot()).resolve(init)
        out = partitions.produce(ViewEnv(root=HostRoot(), opts=ViewOptions()), ctx)
        rows = [ln.split() for ln in out.splitlines()[2:]]
        assert [(int(r[0]), int(r[1]), r[3]) for r in rows] == [(*upper_dev, "sda")]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
