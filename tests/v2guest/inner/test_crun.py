"""crun (which refuses containers on the hybrid host) with the lxcfs hook, then the toolkit's umount and remount,
on the pure cgroup-v2 kernel of the guest. The container is a busybox rootfs with memory.max 256 MiB set by
crun from config.json; what it reads is checked against that limit and against the guest's own MemTotal."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import containers as C
from support.meminfo import host_memtotal_kib, meminfo_kib
from v2guest.inner.conftest import Daemon

BIN = Path(sys.executable).parent
CRUN_MEMORY = 256 * 1024 * 1024


class Crun:
    def __init__(self, base: Path, daemon: Daemon) -> None:
        self.base = base
        self.daemon = daemon
        self.runtime = C.Runtime(base / "crun-root", binary="crun")
        self.registry = base / "registry"

    def env(self) -> dict[str, str]:
        e = dict(os.environ)
        e.update(PYLXCFS_STATE_ROOTS=f"crun:{self.runtime.root}", PYLXCFS_REGISTRY_DIR=str(self.registry),
                 PYLXCFS_PROCSCAN="0")
        return e

    def toolkit(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "isulad-lxcfs-toolkit"), "--lxcfs-dir", str(self.daemon.mnt), *args],
                              env=self.env(), capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def crun(scratch: Path, daemon: Daemon) -> Iterator[Crun]:
    assert subprocess.run(["crun", "--version"], capture_output=True, check=False).returncode == 0, "crun missing"
    base = scratch / "crun"
    base.mkdir()
    env = Crun(base, daemon)
    # The hook gives the daemon 2 s to answer before the container starts with host values (by design: a
    # container start never waits on a slow daemon). Under emulation a just-mounted daemon's first answers take
    # longer (its workers are still importing), so wait as an operator's start script would (the DaemonSet does
    # the same) until a 2 s probe succeeds, and serve one read.
    started = time.monotonic()
    r = env.toolkit("check-lxcfs", "--wait", "240", "--timeout", "2")
    assert r.returncode == 0, f"daemon not serving: {r.stdout}{r.stderr}\n{daemon.log_text()}"
    print(f"check-lxcfs: serving after {time.monotonic() - started:.1f} s")
    assert (daemon.mnt / "proc" / "meminfo").read_text().startswith("MemTotal:")
    try:
        yield env
    finally:
        env.runtime.cleanup()
        for d in sorted(Path("/sys/fs/cgroup/pylxcfs-test-crun").glob("**/"), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()


# Above the session's 300 s: on a loaded host the guest's first daemon start, the readiness wait and four Python
# starts under emulation have taken 220 s together.
@pytest.mark.timeout(600)
def test_crun_hook_then_umount_and_remount(crun: Crun) -> None:
    b = C.make_bundle(crun.base, "crun1", memory_bytes=CRUN_MEMORY, cpus="0", cgroup_parent="pylxcfs-test-crun")
    b.add_hook("createRuntime", str(BIN / "lxcfs-hook"),
               ["lxcfs-hook", "--stage", "createRuntime", "--lxcfs-dir", str(crun.daemon.mnt),
                "--registry-dir", str(crun.registry), "--log", str(crun.base / "hook.log"),
                # The guest is emulated and shares the host's CPUs: the 2 s default readiness deadline was missed
                # once under heavy host load, and this test is about crun's hook path, not the deadline.
                "--timeout", "100", "--probe-timeout", "60"], timeout=120)
    ct = crun.runtime.run("crun1", b, timeout=240)
    hooklog = (crun.base / "hook.log").read_text() if (crun.base / "hook.log").exists() else ""

    def meminfo() -> str:
        return ct.exec("grep", "", "/proc/meminfo", timeout=120, check=True).stdout

    assert meminfo_kib(meminfo()) == CRUN_MEMORY // 1024, hooklog
    lxcfs = [m for m in ct.host_mountinfo() if m.is_lxcfs]
    assert any(m.mountpoint == "/proc/meminfo" for m in lxcfs), lxcfs
    assert not any(m.is_shared for m in lxcfs)
    rec = json.loads((crun.registry / "crun1.json").read_text())
    assert rec["pid"] == ct.pid

    r = crun.toolkit("umount", "--container-id", "crun1")
    assert r.returncode == 0, r.stderr
    assert not [m for m in ct.host_mountinfo() if m.is_lxcfs]
    assert meminfo_kib(meminfo()) == host_memtotal_kib()  # the kernel's own file again

    r = crun.toolkit("remount", "--container-id", "crun1")
    assert r.returncode == 0, r.stderr
    assert meminfo_kib(meminfo()) == CRUN_MEMORY // 1024
    assert len([m for m in ct.host_mountinfo() if m.mountpoint == "/proc/meminfo" and m.is_lxcfs]) == 1
