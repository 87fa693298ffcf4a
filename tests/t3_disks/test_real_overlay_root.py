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
from collections.abc import Iterator
from dataclasses import dataclass
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


def _fuse_lower(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """A read-only fuse-overlayfs mount (entry timeout 0: every lookup revalidates with its server) holding
    bin/busybox and an empty dev/: the lower layer of an engine overlay, as a lazy-pulling snapshotter makes it."""
    src, at = tmp_path / "src", tmp_path / "fuselower"
    for d in (src / "bin", src / "dev", at):
        d.mkdir(parents=True)
    shutil.copy("/bin/busybox", src / "bin" / "busybox")
    srv = subprocess.Popen(["fuse-overlayfs", "-f", "-o", f"lowerdir={src},timeout=0", str(at)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not any(line.split()[4] == str(at) for line in Path("/proc/self/mountinfo").read_text().splitlines()):
        assert srv.poll() is None, f"fuse-overlayfs exited: {srv.stderr.read().decode() if srv.stderr else ''}"
        assert time.monotonic() < deadline, "fuse-overlayfs did not mount"
        time.sleep(0.02)
    return srv, at


def _engine_overlay_on_fuse(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path, tuple[int, int]]:
    srv, lower = _fuse_lower(tmp_path)
    upper, work, merged = (tmp_path / n for n in ("upper", "work", "merged"))
    for d in (upper, work, merged):
        d.mkdir()
    st = os.stat(upper)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={lower},upperdir={upper},workdir={work}",
                    str(merged)], check=True)
    return srv, upper, merged, (os.major(st.st_dev), os.minor(st.st_dev))


def _teardown(srv: subprocess.Popen[bytes], proc: subprocess.Popen[bytes] | None, tmp_path: Path) -> None:
    os.kill(srv.pid, signal.SIGCONT)
    if proc is not None:
        _stop(proc)
    subprocess.run(["umount", "-l", str(tmp_path / "merged")], check=False)
    subprocess.run(["umount", "-l", str(tmp_path / "fuselower")], check=False)
    srv.kill()
    srv.wait(timeout=10)


def _counting_walks(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Replace forkjob.fd_from_child by a wrapper recording how long each child took."""
    from pylxcfs import forkjob

    took: list[float] = []
    real = forkjob.fd_from_child

    def counted(opener, timeout_s):  # type: ignore[no-untyped-def]
        t = time.monotonic()
        try:
            return real(opener, timeout_s)
        finally:
            took.append(time.monotonic() - t)

    monkeypatch.setattr(forkjob, "fd_from_child", counted)
    return took


@dataclass
class Layered:
    """A container whose root is an engine overlay over a fuse-overlayfs lower layer, its /dev a tmpfs holding
    one node, xvdq, for the upper layer's device; `walks` records each child forkjob.fd_from_child ran."""

    walks: list[float]
    srv: subprocess.Popen[bytes]
    upper_dev: tuple[int, int]
    merged: Path
    proc: subprocess.Popen[bytes]
    init: int


@pytest.fixture
def layered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Layered]:
    walks = _counting_walks(monkeypatch)
    srv, upper, merged, upper_dev = _engine_overlay_on_fuse(tmp_path)
    proc = None
    try:
        proc, init = _start(upper, [f"mount -t tmpfs -o mode=755 tmpfs {merged}/dev",
                                    f"mknod {merged}/dev/xvdq b {upper_dev[0]} {upper_dev[1]}", RUN.format(m=merged)])
        yield Layered(walks, srv, upper_dev, merged, proc, init)
    finally:
        _teardown(srv, proc, tmp_path)


def test_engine_overlay_on_a_revalidating_layer_is_walked_once_in_a_child(layered: Layered) -> None:
    # Layers whose dentries revalidate (9p in the v2 test guest, NFS, FUSE snapshotters) defeat a lookup from
    # the dentry cache; the daemon then walks to the container's /dev in a child and keeps an O_PATH fd on it.
    from pylxcfs import devnames

    walks, init, upper_dev, merged = layered.walks, layered.init, layered.upper_dev, layered.merged
    now = [0.0]
    cache = devnames.DeviceNameCache(ttl_s=0, clock=lambda: now[0])
    devs = cache.get(HostRoot(), init, 0)
    assert devs.root_dev == upper_dev
    assert devs.nodes == {upper_dev: "xvdq"}
    assert len(walks) == 1 and cache.held_fds == 1 and cache.stats.walks == 1
    # Re-checks use the kept fd: no child, and a node added later is seen (tmpfs bumps /dev's mtime).
    subprocess.run(["nsenter", "-t", str(init), "-m", "/bin/busybox", "mknod", f"{merged}/dev/xvdr", "b",
                    str(upper_dev[0]), str(upper_dev[1] + 1)], check=False)
    # (nsenter keeps the host's root, so the path is the host-side one inside the container's namespace.)
    devs = cache.get(HostRoot(), init, 0)
    assert len(walks) == 1 and cache.stats.scans == 2
    assert devs.nodes.get((upper_dev[0], upper_dev[1] + 1)) == "xvdr"
    # The container ends: the kept fd is closed at the next prune.
    _stop(layered.proc)
    now[0] += devnames.PRUNE_S
    cache.get(HostRoot(), os.getpid(), 0)
    assert cache.held_fds == 0


def test_engine_overlay_on_a_stopped_layer_server_costs_one_bounded_walk(layered: Layered) -> None:
    from pylxcfs import devnames

    walks, init, upper_dev, srv = layered.walks, layered.init, layered.upper_dev, layered.srv
    os.kill(srv.pid, signal.SIGSTOP)  # the layer's server stops answering: a lookup of `dev` hangs
    now = [0.0]
    cache = devnames.DeviceNameCache(ttl_s=0, clock=lambda: now[0])
    devs = cache.get(HostRoot(), init, 0)
    # The root device comes from the text; /dev could not be had, so no node is named.
    assert devs.root_dev == upper_dev and devs.nodes == {}
    assert len(walks) == 1 and cache.stats.walks == 0 and cache.held_fds == 0
    assert walks[0] >= devnames.WALK_TIMEOUT_S  # the child was killed at its deadline, not answered
    # Until WALK_RETRY_S has passed, no further child for this container.
    now[0] += devnames.WALK_RETRY_S / 2
    assert cache.get(HostRoot(), init, 0).nodes == {} and len(walks) == 1
    # The server answers again: the next try after WALK_RETRY_S names the node.
    os.kill(srv.pid, signal.SIGCONT)
    now[0] += devnames.WALK_RETRY_S
    assert cache.get(HostRoot(), init, 0).nodes == {upper_dev: "xvdq"} and len(walks) == 2
